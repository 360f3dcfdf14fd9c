// Standalone test of the C kernel library: every level this CPU supports (or only the one named by
// EDGELM_KERNELS) against the generic reference. Built natively and, cross-compiled, run under
// qemu-aarch64 by scripts/test-kernels.
//  - activation quantizer: codes and scales bit-identical;
//  - matrix kernels, q8 and q4, on random and edge inputs (+-127 corners, zeros, alternating signs,
//    nibbles 0 and 15), odd block counts, group sizes 1/2/3/whole row, tiles of 1..13 tokens, row ranges:
//    with unit scales every output is an exact integer sum and must be bit-identical; with random scales
//    within 4 * (nblocks + 8) float epsilons of the sum of |w_i * x_i| * scale;
//  - no read past the end of the weights or activations (buffers end at an inaccessible page);
//  - only the requested rows are written;
//  - attention kernels over f16 and q8 caches (scores, value sums) on head sizes 8-128;
//  - the softmax steps: scaled scores and their maximum bit-identical, exp within 2 ulp of expf (0
//    below ln(FLT_MIN), NaN for NaN), sums within n float epsilons; SwiGLU within 4 ulp.
#include "EdgeKernels.h"
#include "../../Sources/CEdgeKernels/internal.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

static int passed, failed;

static void check(int ok, const char *what, int isa, const char *detail) {
    if (ok) { passed++; return; }
    failed++;
    if (failed <= 20) fprintf(stderr, "FAIL [%s] %s: %s\n", edge_isa_name(isa), what, detail);
}

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint64_t next_random(void) {
    uint64_t z = (rng_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static float uniform(void) { return (float)(next_random() >> 40) / (float)(1u << 24); }

/// IEEE half of a positive normal float (truncating), enough for test scales.
static uint16_t to_half(float f) {
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    int exp = (int)((bits >> 23) & 0xFF) - 127 + 15;
    return (uint16_t)((exp << 10) | ((bits >> 13) & 0x3FF));
}

/// Memory whose last byte sits just before a PROT_NONE page.
typedef struct { void *base; size_t mapped; uint8_t *data; } guarded;

static guarded guarded_alloc(size_t bytes) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE), pages = (bytes + page - 1) / page;
    guarded g;
    g.mapped = (pages + 1) * page;
    g.base = mmap(NULL, g.mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (g.base == MAP_FAILED) { perror("mmap"); exit(2); }
    mprotect((uint8_t *)g.base + pages * page, page, PROT_NONE);
    g.data = (uint8_t *)g.base + pages * page - bytes;
    return g;
}
static void guarded_free(guarded g) { munmap(g.base, g.mapped); }

enum { RANDOM, EXTREMES, ZEROS, ALTERNATING, PATTERNS };
static const char *const pattern_names[] = { "random", "extremes", "zeros", "alternating" };

static void fill_weights(uint8_t *w, size_t bytes, int q4, int pattern) {
    for (size_t i = 0; i < bytes; i++) {
        switch (pattern) {
        case RANDOM: w[i] = q4 ? (uint8_t)next_random() : (uint8_t)(int8_t)((int)(next_random() % 255) - 127); break;
        case EXTREMES: w[i] = q4 ? (i % 3 ? 0x00 : 0xFF) : (uint8_t)(int8_t)(i % 3 == 0 ? -127 : 127); break;
        case ZEROS: w[i] = q4 ? 0x88 : 0; break;
        default: w[i] = q4 ? 0xF0 : (uint8_t)(int8_t)(i % 2 == 0 ? 127 : -127); break;
        }
    }
}

static void fill_activations(int8_t *x, size_t n, int pattern) {
    for (size_t i = 0; i < n; i++) {
        switch (pattern) {
        case RANDOM: x[i] = (int8_t)((int)(next_random() % 255) - 127); break;
        case EXTREMES: x[i] = (int8_t)(i % 5 == 0 ? 127 : -127); break;
        case ZEROS: x[i] = 0; break;
        default: x[i] = (int8_t)(i % 2 == 0 ? -127 : 127); break;
        }
    }
}

/// Sum of |w_i * x_i| over one block: what bounds the rounding of a block's partial sums, whichever
/// lanes a level splits them into.
static int32_t block_abs_dot(int q4, const uint8_t *w, const int8_t *x) {
    int32_t sum = 0;
    for (int i = 0; i < 32; i++) {
        int32_t c = q4 ? (int32_t)((i < 16 ? w[i] & 0x0F : w[i - 16] >> 4)) - 8 : (int32_t)(int8_t)w[i];
        sum += abs(c * x[i]);
    }
    return sum;
}

static void matmul(int isa, int q4, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks, int64_t r0,
                   int64_t r1, const int8_t *x, const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    edge_matmul(isa, q4 ? edge_scheme_q4() : edge_scheme_q8(), w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

/// One shape, every pattern and group size, unit and random scales; out is [rows, ntok] token-major.
static void test_matmul(int isa, int q4, int rows, int nblocks, int ntok) {
    int64_t block_bytes = q4 ? 16 : 32, wbytes = rows * nblocks * block_bytes, xbytes = (int64_t)ntok * nblocks * 32;
    int groups_list[4] = { 1, 2, 3, nblocks };
    for (int pattern = 0; pattern < PATTERNS; pattern++) {
        for (int gi = 0; gi < 4; gi++) {
            int gblocks = groups_list[gi], ngroups = (nblocks + gblocks - 1) / gblocks;
            guarded gw = guarded_alloc((size_t)wbytes), gx = guarded_alloc((size_t)xbytes);
            fill_weights(gw.data, (size_t)wbytes, q4, pattern);
            fill_activations((int8_t *)gx.data, (size_t)xbytes, pattern);
            uint16_t *ws = malloc(sizeof(uint16_t) * (size_t)(rows * ngroups));
            float *xs = malloc(sizeof(float) * (size_t)(ntok * nblocks));
            float *expected = malloc(sizeof(float) * (size_t)(rows * ntok)), *got = malloc(sizeof(float) * (size_t)(rows * ntok));
            for (int unit = 1; unit >= 0; unit--) {
                for (int i = 0; i < rows * ngroups; i++) ws[i] = unit ? 0x3C00 : to_half(uniform() * 0.05f + 1e-3f);
                for (int i = 0; i < ntok * nblocks; i++) xs[i] = unit ? 1.0f : uniform() * 0.1f + 1e-3f;
                // Exact integer sums need |sum| < 2^24: at most 32 blocks of +-127 x +-127.
                if (unit && nblocks > 32) continue;
                matmul(EDGE_ISA_GENERIC, q4, gw.data, ws, nblocks, gblocks, 0, rows, (const int8_t *)gx.data, xs, ntok, expected, 1, rows);
                for (int i = 0; i < rows * ntok; i++) got[i] = NAN;
                matmul(isa, q4, gw.data, ws, nblocks, gblocks, 0, rows, (const int8_t *)gx.data, xs, ntok, got, 1, rows);
                for (int r = 0; r < rows; r++) {
                    for (int t = 0; t < ntok; t++) {
                        float e = expected[t * rows + r], o = got[t * rows + r];
                        int ok;
                        if (unit) {
                            ok = memcmp(&e, &o, sizeof e) == 0;
                        } else {
                            double magnitude = 0;
                            for (int b = 0; b < nblocks; b++) {
                                int32_t d = block_abs_dot(q4, gw.data + (r * nblocks + b) * block_bytes, (const int8_t *)gx.data + (t * nblocks + b) * 32);
                                magnitude += ((double)d * xs[t * nblocks + b] * edge_half_to_float(ws[r * ngroups + b / gblocks]));
                            }
                            ok = fabs((double)o - (double)e) <= 4.0 * (nblocks + 8) * 1.2e-7 * magnitude + 1e-30;
                        }
                        char detail[200];
                        snprintf(detail, sizeof detail, "%s rows %d blocks %d tokens %d group %d %s scales: row %d token %d: %.9g vs %.9g",
                                 q4 ? "q4" : "q8", rows, nblocks, ntok, gblocks, unit ? "unit" : "random", r, t, o, e);
                        check(ok, pattern_names[pattern], isa, detail);
                    }
                }
            }
            free(ws); free(xs); free(expected); free(got);
            guarded_free(gw); guarded_free(gx);
        }
    }
}

/// Rows outside [r0, r1) keep their sentinel.
/// Rows outside [r0, r1) keep their sentinel (r0 unaligned, and past the 16-row GEMM tiles for 40 rows).
static void test_row_range(int isa, int q4, int rows, int r0, int r1) {
    enum { NBLOCKS = 8, NTOK = 3, MAXROWS = 40 };
    int64_t block_bytes = q4 ? 16 : 32;
    uint8_t *w = malloc((size_t)(rows * NBLOCKS * block_bytes));
    int8_t x[NTOK * NBLOCKS * 32];
    float xs[NTOK * NBLOCKS], out[MAXROWS * NTOK];
    uint16_t ws[MAXROWS * NBLOCKS];
    fill_weights(w, (size_t)(rows * NBLOCKS * block_bytes), q4, RANDOM);
    fill_activations(x, sizeof x, RANDOM);
    for (int i = 0; i < NTOK * NBLOCKS; i++) xs[i] = 0.01f;
    for (int i = 0; i < rows * NBLOCKS; i++) ws[i] = to_half(0.01f);
    for (int i = 0; i < rows * NTOK; i++) out[i] = -1.0f;
    matmul(isa, q4, w, ws, NBLOCKS, 1, r0, r1, x, xs, NTOK, out, 1, rows);
    int ok = 1;
    for (int t = 0; t < NTOK; t++)
        for (int r = 0; r < rows; r++) ok &= (r >= r0 && r < r1) ? out[t * rows + r] != -1.0f : out[t * rows + r] == -1.0f;
    char detail[64];
    snprintf(detail, sizeof detail, "%s rows %d, range [%d, %d)", q4 ? "q4" : "q8", rows, r0, r1);
    check(ok, "row range", isa, detail);
    free(w);
}

enum { TOKENWISE_Q8, TOKENWISE_Q4, TOKENWISE_Q4A, TOKENWISE_Q4O };
static const char *const tokenwise_names[] = { "q8", "q4", "q4a", "q4o" };
static const edge_scheme_kernel *(*const tokenwise_schemes[])(void) = { edge_scheme_q8, edge_scheme_q4, edge_scheme_q4a, edge_scheme_q4o };

/// The plain (tokenwise 0) or token-wise (1) product of `scheme`.
static void tokenwise_matmul(int isa, int scheme, int tokenwise, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                             int64_t rows, const int8_t *x, const float *xs, int64_t ntok, float *out) {
    if (tokenwise)
        edge_matmul_tokenwise(isa, tokenwise_schemes[scheme](), 0, w, ws, nblocks, gblocks, 0, rows, x, xs, ntok, out, 1, rows);
    else
        edge_matmul(isa, tokenwise_schemes[scheme](), w, ws, nblocks, gblocks, 0, rows, x, xs, ntok, out, 1, rows);
}

/// The token-wise products over ntok tokens equal, bit for bit, one plain call per token (what decode computes), for
/// every group size, including shapes that reach the GEMM tiles and their row tails; q4a and q4o past one chunk of
/// decoded scales (64 rows).
static void test_tokenwise(int isa, int scheme, int rows, int nblocks, int ntok) {
    int64_t block_bytes = scheme == TOKENWISE_Q8 ? 32 : 16, wbytes = rows * nblocks * block_bytes, xbytes = (int64_t)ntok * nblocks * 32;
    int groups_list[4] = { 1, 2, 3, nblocks };
    for (int gi = 0; gi < 4; gi++) {
        int gblocks = groups_list[gi], ngroups = (nblocks + gblocks - 1) / gblocks;
        guarded gw = guarded_alloc((size_t)wbytes), gx = guarded_alloc((size_t)xbytes);
        fill_weights(gw.data, (size_t)wbytes, scheme != TOKENWISE_Q8, RANDOM);
        fill_activations((int8_t *)gx.data, (size_t)xbytes, RANDOM);
        uint16_t *ws = malloc(sizeof(uint16_t) * (size_t)(2 * rows * ngroups));
        float *xs = malloc(sizeof(float) * (size_t)(ntok * nblocks));
        float *alone = malloc(sizeof(float) * (size_t)(rows * ntok)), *batched = malloc(sizeof(float) * (size_t)(rows * ntok));
        for (int i = 0; i < 2 * rows * ngroups; i++) {
            const uint16_t half = to_half(uniform() * 0.05f + 1e-3f);
            // q4o: (scale, offset of either sign) pairs; q4a: a scale's top bits and a zero point.
            ws[i] = scheme == TOKENWISE_Q4O ? (uint16_t)(half | (i & 1 ? (next_random() & 1) << 15 : 0))
                  : scheme == TOKENWISE_Q4A ? (uint16_t)((half >> 3) << 4 | (next_random() & 15)) : half;
        }
        for (int i = 0; i < ntok * nblocks; i++) xs[i] = uniform() * 0.1f + 1e-3f;
        const int8_t *x = (const int8_t *)gx.data;
        for (int t = 0; t < ntok; t++)
            tokenwise_matmul(isa, scheme, 0, gw.data, ws, nblocks, gblocks, rows, x + t * nblocks * 32, xs + t * nblocks, 1, alone + t * rows);
        tokenwise_matmul(isa, scheme, 1, gw.data, ws, nblocks, gblocks, rows, x, xs, ntok, batched);
        char detail[160];
        snprintf(detail, sizeof detail, "%s rows %d blocks %d tokens %d group %d", tokenwise_names[scheme], rows, nblocks, ntok, gblocks);
        check(memcmp(alone, batched, sizeof(float) * (size_t)(rows * ntok)) == 0, "tokenwise = one token at a time", isa, detail);
        free(ws); free(xs); free(alone); free(batched);
        guarded_free(gw); guarded_free(gx);
    }
}

/// Rows packed sixteen at a time (edge_pack_rows): the level's packed product equals the scalar reference bit for
/// bit, each token of a batch equals that token alone, rows outside the range keep their sentinel, and the result
/// is the row-major product of q8, q4 or q4o up to float rounding (so the layout means what the matrix means), for
/// every group size.
static void test_packed(int isa, int kind, int rows, int nblocks, int ntok) {
    static const char *const names[] = { "q8", "q4", "q4o" };
    const int words = kind == EDGE_PACKED_Q4O ? 2 : 1;
    int64_t block_bytes = kind == EDGE_PACKED_Q8 ? 32 : 16, wbytes = rows * nblocks * block_bytes, xbytes = (int64_t)ntok * nblocks * 32;
    const int64_t packed_rows = rows / 16 * 16, first = packed_rows > 16 ? 16 : 0;
    const edge_scheme_kernel *scheme = kind == EDGE_PACKED_Q8 ? edge_scheme_q8() : kind == EDGE_PACKED_Q4 ? edge_scheme_q4() : edge_scheme_q4o();
    int groups_list[4] = { 1, 2, 3, nblocks };
    for (int pattern = 0; pattern < PATTERNS; pattern++)
        for (int gi = 0; gi < 4; gi++) {
            int gblocks = groups_list[gi], ngroups = (nblocks + gblocks - 1) / gblocks;
            guarded gw = guarded_alloc((size_t)wbytes), gx = guarded_alloc((size_t)xbytes);
            guarded gp = guarded_alloc((size_t)edge_packed_bytes(kind, rows, nblocks));
            fill_weights(gw.data, (size_t)wbytes, kind != EDGE_PACKED_Q8, pattern);
            fill_activations((int8_t *)gx.data, (size_t)xbytes, pattern);
            const int8_t *x = (const int8_t *)gx.data;
            uint16_t *ws = malloc(sizeof(uint16_t) * (size_t)(rows * ngroups * words));
            float *xs = malloc(sizeof(float) * (size_t)(ntok * nblocks));
            size_t outs = sizeof(float) * (size_t)(rows * ntok);
            float *expected = malloc(outs), *got = malloc(outs), *alone = malloc(outs), *rowmajor = malloc(outs);
            // q4o: (scale, offset of either sign) pairs.
            for (int i = 0; i < rows * ngroups * words; i++)
                ws[i] = (uint16_t)(to_half(uniform() * 0.05f + 1e-3f) | (words == 2 && (i & 1) ? (next_random() & 1) << 15 : 0));
            for (int i = 0; i < ntok * nblocks; i++) xs[i] = uniform() * 0.1f + 1e-3f;
            // In two parts, as threads pack a matrix.
            edge_pack_rows(kind, gw.data, ws, rows, nblocks, gblocks, 0, rows / 32, gp.data);
            edge_pack_rows(kind, gw.data, ws, rows, nblocks, gblocks, rows / 32, rows, gp.data);
            for (int i = 0; i < rows * ntok; i++) expected[i] = got[i] = alone[i] = -1.0f;
            int32_t *sums = malloc(sizeof(int32_t) * (size_t)(ntok * nblocks));
            edge_block_sums(x, ntok * nblocks, sums);
            edge_packed_matmul(EDGE_ISA_GENERIC, kind, gp.data, rows, nblocks, first, packed_rows, x, xs, sums, ntok, expected, 1, rows);
            edge_packed_matmul(isa, kind, gp.data, rows, nblocks, first, packed_rows, x, xs, sums, ntok, got, 1, rows);
            for (int t = 0; t < ntok; t++)
                edge_packed_matmul(isa, kind, gp.data, rows, nblocks, first, packed_rows, x + t * nblocks * 32, xs + t * nblocks,
                                   sums + t * nblocks, 1, alone + t * rows, 1, rows);
            edge_matmul(EDGE_ISA_GENERIC, scheme, gw.data, ws, nblocks, gblocks, 0, rows, x, xs, ntok, rowmajor, 1, rows);
            int close = 1, untouched = 1;
            for (int t = 0; t < ntok; t++)
                for (int r = 0; r < rows; r++) {
                    const float o = got[t * rows + r], e = rowmajor[t * rows + r];
                    if (r < first || r >= packed_rows) {
                        untouched &= o == -1.0f;
                        continue;
                    }
                    double magnitude = 0;
                    for (int b = 0; b < nblocks; b++) {
                        const int8_t *xb = x + (t * nblocks + b) * 32;
                        const int64_t scale = (r * ngroups + b / gblocks) * words;
                        int32_t d = block_abs_dot(kind != EDGE_PACKED_Q8, gw.data + (r * nblocks + b) * block_bytes, xb), sum = 0;
                        for (int k = 0; k < 32; k++) sum += abs(xb[k]);
                        // q4o's codes are n, not n - 8: |n x| <= (|n - 8| + 8) |x|.
                        if (words == 2) d += 8 * sum;
                        magnitude += (double)xs[t * nblocks + b]
                                   * (d * fabs(edge_half_to_float(ws[scale])) + (words == 2 ? sum * fabs(edge_half_to_float(ws[scale + 1])) : 0));
                    }
                    close &= fabs((double)o - (double)e) <= 4.0 * (nblocks + 8) * 1.2e-7 * magnitude + 1e-30;
                }
            char detail[160];
            snprintf(detail, sizeof detail, "%s %s rows %d blocks %d tokens %d group %d", pattern_names[pattern], names[kind], rows,
                     nblocks, ntok, gblocks);
            check(memcmp(expected, got, outs) == 0, "packed: against the scalar reference", isa, detail);
            check(memcmp(alone, got, outs) == 0, "packed: a batch = one token at a time", isa, detail);
            check(untouched, "packed: rows outside the range untouched", isa, detail);
            check(close, "packed: against the row-major product", isa, detail);
            free(ws); free(xs); free(sums); free(expected); free(got); free(alone); free(rowmajor);
            guarded_free(gw); guarded_free(gx); guarded_free(gp);
        }
}

enum { Q4A = 0, Q4N = 1, Q4O = 2, IQ4NL = 3 };

/// q4a (codes with a zero point), q4n (codebook indices) and q4o (scale and offset) against their definitions
/// in double, out = Σ_b s_g xs_b Σ c(n) x with c(n) = n - z (q4a) or levels[n] (q4n), and for q4o
/// Σ_b xs_b Σ (d_g n + m_g) x: rows past one chunk (64 rows of decoded q4a/q4o scales, 32 rows of decoded q4n
/// blocks), a row range that starts inside the matrix, random q4a zero points 0-15, q4n scales and q4o offsets of
/// either sign; for one token, q4n bit for bit the level's q8 product of the decoded blocks. iq4nl is tested as
/// q4n is, with IQ4_NL's codebook.
static void test_matmul_nibbles(int isa, int scheme, int rows, int nblocks, int ntok) {
    const int q4n = scheme == Q4N || scheme == IQ4NL, q4o = scheme == Q4O;
    const int8_t *levels = scheme == IQ4NL ? edge_iq4nl_levels : edge_q4n_levels;
    int groups_list[4] = { 1, 2, 3, nblocks };
    const int r0 = rows > 8 ? 3 : 0;
    for (int gi = 0; gi < 4; gi++) {
        int gblocks = groups_list[gi], ngroups = (nblocks + gblocks - 1) / gblocks;
        guarded gw = guarded_alloc((size_t)(rows * nblocks * 16)), gx = guarded_alloc((size_t)(ntok * nblocks * 32));
        fill_weights(gw.data, (size_t)(rows * nblocks * 16), 1, RANDOM);
        fill_activations((int8_t *)gx.data, (size_t)(ntok * nblocks * 32), RANDOM);
        uint16_t *ws = malloc(sizeof(uint16_t) * (size_t)(2 * rows * ngroups));
        int8_t *decoded = malloc((size_t)(rows * nblocks * 32));
        float *xs = malloc(sizeof(float) * (size_t)(ntok * nblocks)), *got = malloc(sizeof(float) * (size_t)(rows * ntok));
        float *want = malloc(sizeof(float) * (size_t)(rows * ntok));  // q4n: the q8 product of the decoded blocks
        for (int i = 0; i < rows * ngroups; i++) {
            const uint16_t half = to_half(uniform() * 0.05f + 1e-3f);
            if (q4o) {
                ws[2 * i] = half;
                // An offset of either sign: to_half's bits with the sign bit set for half of them.
                ws[2 * i + 1] = (uint16_t)(to_half(uniform() * 0.4f + 1e-3f) | (next_random() & 1) << 15);
                continue;
            }
            ws[i] = q4n ? (uint16_t)(half | (next_random() & 1) << 15) : (uint16_t)((half >> 3) << 4 | (next_random() & 15));
        }
        for (int i = 0; i < ntok * nblocks; i++) xs[i] = uniform() * 0.1f + 1e-3f;
        for (int i = 0; i < rows * nblocks * 32; i++) {
            const uint8_t byte = gw.data[i / 32 * 16 + i % 16];
            const int n = i % 32 < 16 ? byte & 0x0F : byte >> 4;
            decoded[i] = (int8_t)(q4n ? levels[n] : q4o ? n : n - (ws[i / 32 / nblocks * ngroups + i / 32 % nblocks / gblocks] & 15));
        }
        for (int i = 0; i < rows * ntok; i++) got[i] = want[i] = -1.0f;
        edge_matmul(isa, scheme == IQ4NL ? edge_scheme_iq4nl() : q4n ? edge_scheme_q4n() : q4o ? edge_scheme_q4o() : edge_scheme_q4a(), gw.data, ws, nblocks, gblocks, r0, rows, (const int8_t *)gx.data, xs, ntok, got, 1, rows);
        int ok = 1;
        if (q4n) {
            edge_matmul(isa, edge_scheme_q8(), decoded, ws, nblocks, gblocks, r0, rows, (const int8_t *)gx.data, xs, ntok, want, 1, rows);
            ok &= ntok > 1 || memcmp(got, want, sizeof(float) * (size_t)(rows * ntok)) == 0;
        }
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < ntok; t++) {
                double exact = 0, magnitude = 0;
                for (int b = 0; b < nblocks; b++) {
                    const int g = r * ngroups + b / gblocks;
                    if (q4o) {
                        const double d = edge_half_to_float(ws[2 * g]), m = edge_half_to_float(ws[2 * g + 1]), s = xs[t * nblocks + b];
                        for (int i = 0; i < 32; i++) {
                            const int n = decoded[(r * nblocks + b) * 32 + i], xv = ((const int8_t *)gx.data)[(t * nblocks + b) * 32 + i];
                            exact += s * (d * n + m) * xv;
                            // The q4 kernel's d |n - 8| and the offset's |m + 8 d| add up separately.
                            magnitude += s * (fabs(d) * abs(n - 8) + fabs(m + 8 * d)) * abs(xv);
                        }
                        continue;
                    }
                    const uint16_t word = ws[g];
                    const double scale = edge_half_to_float(q4n ? word : edge_q4a_scale_half(word)) * xs[t * nblocks + b];
                    for (int i = 0; i < 32; i++) {
                        const int c = decoded[(r * nblocks + b) * 32 + i], xv = ((const int8_t *)gx.data)[(t * nblocks + b) * 32 + i];
                        exact += scale * c * xv;
                        // q4a: the q4 kernel's |n - 8| and the offset's |8 - z| add up separately.
                        magnitude += fabs(scale) * (q4n ? abs(c) : abs(c + (word & 15) - 8) + abs(8 - (word & 15))) * abs(xv);
                    }
                }
                float o = got[t * rows + r];
                ok &= r < r0 ? o == -1.0f : fabs(o - exact) <= 4.0 * (nblocks + 8) * 1.2e-7 * magnitude + 1e-30;
            }
        char detail[96];
        snprintf(detail, sizeof detail, "rows %d blocks %d tokens %d group %d", rows, nblocks, ntok, gblocks);
        check(ok, scheme == IQ4NL ? "iq4nl matmul" : q4n ? "q4n matmul" : q4o ? "q4o matmul" : "q4a matmul", isa, detail);
        free(ws); free(decoded); free(xs); free(got); free(want);
        guarded_free(gw); guarded_free(gx);
    }
}

/// q5o (5-bit codes, a scale and an offset per group) and q6 (6-bit codes, a scale per 16 weights) against their
/// definitions in double: the unsigned code n of weight j is its nibble (byte j % 16 of the block, low for j < 16)
/// plus the high bits from the plane after the 16 nibble bytes (q5o: bit j of a little-endian uint32; q6: bits
/// 2 (j / 8) of byte 16 + j % 8); out = Σ_b xs_b Σ (d_g n + m_g) x for q5o, Σ_b xs_b Σ s_h (n - 32) x for q6. Random
/// codes, scales and offsets of either sign, a row range that starts inside the matrix, q5o groups of 1-3 blocks
/// and the whole row, guarded buffers (no read past the last block).
static void test_matmul_planes(int isa, int bits, int rows, int nblocks, int ntok) {
    const int block_bytes = bits == 5 ? 20 : 24, r0 = rows > 8 ? 3 : 0;
    int groups_list[4] = { 1, 2, 3, nblocks };
    for (int gi = 0; gi < (bits == 5 ? 4 : 1); gi++) {
        const int gblocks = groups_list[gi], ngroups = (nblocks + gblocks - 1) / gblocks;
        guarded gw = guarded_alloc((size_t)(rows * nblocks * block_bytes)), gx = guarded_alloc((size_t)(ntok * nblocks * 32));
        for (int i = 0; i < rows * nblocks * block_bytes; i++) gw.data[i] = (uint8_t)next_random();
        fill_activations((int8_t *)gx.data, (size_t)(ntok * nblocks * 32), RANDOM);
        uint16_t *ws = malloc(sizeof(uint16_t) * (size_t)(2 * rows * ngroups));
        float *xs = malloc(sizeof(float) * (size_t)(ntok * nblocks)), *got = malloc(sizeof(float) * (size_t)(rows * ntok));
        for (int i = 0; i < 2 * rows * ngroups; i++) ws[i] = (uint16_t)(to_half(uniform() * 0.05f + 1e-3f) | (next_random() & 1) << 15);
        for (int i = 0; i < ntok * nblocks; i++) xs[i] = uniform() * 0.1f + 1e-3f;
        for (int i = 0; i < rows * ntok; i++) got[i] = -1.0f;
        edge_matmul(isa, bits == 5 ? edge_scheme_q5o() : edge_scheme_q6(), gw.data, ws, nblocks, gblocks, r0, rows, (const int8_t *)gx.data, xs, ntok, got, 1, rows);
        int ok = 1;
        for (int r = 0; r < rows; r++)
            for (int t = 0; t < ntok; t++) {
                double exact = 0, magnitude = 0;
                for (int b = 0; b < nblocks; b++) {
                    const uint8_t *block = gw.data + (r * nblocks + b) * block_bytes;
                    const uint16_t *pair = ws + 2 * (r * ngroups + b / gblocks);
                    const double first = edge_half_to_float(pair[0]), second = edge_half_to_float(pair[1]), s = xs[t * nblocks + b];
                    for (int j = 0; j < 32; j++) {
                        const int nibble = j < 16 ? block[j] & 15 : block[j - 16] >> 4;
                        const int n = bits == 5 ? nibble | ((block[16 + j / 8] >> (j % 8)) & 1) << 4
                                                : nibble | ((block[16 + j % 8] >> (2 * (j / 8))) & 3) << 4;
                        const int xv = ((const int8_t *)gx.data)[(t * nblocks + b) * 32 + j];
                        const double weight = bits == 5 ? first * n + second : (j < 16 ? first : second) * (n - 32);
                        exact += s * weight * xv;
                        magnitude += s * (bits == 5 ? fabs(first) * abs(n - 16) + fabs(second + 16 * first) : fabs(weight)) * abs(xv);
                    }
                }
                const float o = got[t * rows + r];
                ok &= r < r0 ? o == -1.0f : fabs(o - exact) <= 4.0 * (nblocks + 8) * 1.2e-7 * magnitude + 1e-30;
            }
        char detail[96];
        snprintf(detail, sizeof detail, "rows %d blocks %d tokens %d group %d", rows, nblocks, ntok, gblocks);
        check(ok, bits == 5 ? "q5o matmul" : "q6 matmul", isa, detail);
        free(ws); free(xs); free(got);
        guarded_free(gw); guarded_free(gx);
    }
}

/// The q4n codebook and fit: ascending levels with 0 at index 8, nearest-level indices (midpoints go up), codes
/// that are levels, the exact fit of a group on the grid (either sign), zeros, and an error no worse than 1.1x a
/// symmetric q4 fit's on bell-shaped random groups.
static void test_q4n_fit(void) {
    enum { N = 64 };
    int ok = edge_q4n_levels[8] == 0;
    for (int k = 0; k < 16; k++) {
        ok &= k == 0 || edge_q4n_levels[k] > edge_q4n_levels[k - 1];
        ok &= edge_q4n_index((float)edge_q4n_levels[k]) == k;
        if (k > 0) {
            const float mid = 0.5f * (float)(edge_q4n_levels[k - 1] + edge_q4n_levels[k]);
            ok &= edge_q4n_index(mid) == k && edge_q4n_index(mid - 0.01f) == k - 1;
        }
    }
    ok &= edge_q4n_index(-1e9f) == 0 && edge_q4n_index(1e9f) == 15;
    check(ok, "q4n fit", EDGE_ISA_GENERIC, "codebook and nearest index");
    float x[N], w[N];
    int8_t codes[N], q4codes[N];
    double total = 0, total4 = 0;
    ok = 1;
    for (int trial = 0; trial < 400; trial++) {
        for (int i = 0; i < N; i++) {
            x[i] = (uniform() + uniform() + uniform() - 1.5f) * (trial % 5 == 0 ? 1e-3f : 1.0f);
            w[i] = trial % 2 ? uniform() + 0.01f : 1.0f;
        }
        uint16_t word = edge_fit_q4n(x, trial % 2 ? w : NULL, N, codes);
        float s = edge_half_to_float(word), s4 = edge_half_to_float(edge_fit_q4_reference(x, trial % 2 ? w : NULL, N, q4codes, 0));
        for (int i = 0; i < N; i++) {
            ok &= edge_q4n_levels[edge_q4n_index(codes[i])] == codes[i];
            double wi = trial % 2 ? w[i] : 1;
            total += wi * (x[i] - s * codes[i]) * (x[i] - s * codes[i]);
            total4 += wi * (x[i] - s4 * q4codes[i]) * (x[i] - s4 * q4codes[i]);
        }
    }
    ok &= total <= 1.1 * total4;
    check(ok, "q4n fit", EDGE_ISA_GENERIC, "random groups against q4");
    for (int sign = -1; sign <= 1; sign += 2) {
        for (int i = 0; i < N; i++) x[i] = (float)(sign * edge_q4n_levels[(i * 7) % 16]) * 0.0625f;
        uint16_t word = edge_fit_q4n(x, NULL, N, codes);
        ok = edge_half_to_float(word) == sign * 0.0625f;
        for (int i = 0; i < N; i++) ok &= codes[i] == edge_q4n_levels[(i * 7) % 16];
        check(ok, "q4n fit", EDGE_ISA_GENERIC, sign < 0 ? "exact group, negative scale" : "exact group");
    }
    for (int i = 0; i < N; i++) x[i] = 0;
    ok = edge_fit_q4n(x, NULL, N, codes) == 0 && codes[0] == 0 && codes[N - 1] == 0;
    check(ok, "q4n fit", EDGE_ISA_GENERIC, "zeros");
}

/// The q4a fit: codes within [-z, 15 - z] for its word's zero point, the exact fit of a group on its own grid,
/// scale 0 for zeros, and within 1.5x of the best error of a plain symmetric q4 fit on random groups.
static void test_q4a_fit(void) {
    enum { N = 64 };
    float x[N], w[N];
    int8_t codes[N], q4codes[N];
    int ok = 1;
    for (int trial = 0; trial < 200; trial++) {
        for (int i = 0; i < N; i++) {
            x[i] = (uniform() - (trial % 3 == 0 ? 0.2f : 0.5f)) * 2.0f;
            w[i] = trial % 2 ? uniform() + 0.01f : 1.0f;
        }
        uint16_t word = edge_fit_q4a_reference(x, trial % 2 ? w : NULL, N, codes, 0);
        float s = edge_half_to_float(edge_q4a_scale_half(word));
        int z = word & 15;
        double e = 0, e4 = 0;
        float s4 = edge_half_to_float(edge_fit_q4_reference(x, trial % 2 ? w : NULL, N, q4codes, 0));
        for (int i = 0; i < N; i++) {
            ok &= codes[i] >= -z && codes[i] <= 15 - z;
            double wi = trial % 2 ? w[i] : 1;
            e += wi * (x[i] - s * codes[i]) * (x[i] - s * codes[i]);
            e4 += wi * (x[i] - s4 * q4codes[i]) * (x[i] - s4 * q4codes[i]);
        }
        ok &= s > 0 && e <= 1.5 * e4;
    }
    for (int i = 0; i < N; i++) x[i] = 0.25f * (float)(i % 16) - 1.0f;  // the grid 0.25 (n - 4)
    uint16_t word = edge_fit_q4a_reference(x, NULL, N, codes, 0);
    for (int i = 0; i < N; i++) ok &= codes[i] == (i % 16) - 4;
    ok &= (word & 15) == 4 && edge_half_to_float(edge_q4a_scale_half(word)) == 0.25f;
    for (int i = 0; i < N; i++) x[i] = 0;
    ok &= edge_fit_q4a_reference(x, NULL, N, codes, 0) == 0 && codes[0] == 0 && codes[N - 1] == 0;
    check(ok, "q4a fit", EDGE_ISA_GENERIC, "zero-point codes");
    // A scale that rounds below the 12-bit grid's least step is no word (0), not a zero scale with z in its low bits
    // (whose codes x / 0 are not numbers): every nonzero word has a positive scale.
    int words_ok = 1;
    for (float s = 1e-9f; s < 1e-6f; s *= 1.01f)
        for (int z = 0; z < 16; z++) {
            const uint16_t w = edge_q4a_word(s, z);
            words_ok &= w == 0 || edge_half_to_float(edge_q4a_scale_half(w)) > 0;
        }
    check(words_ok, "q4a word", EDGE_ISA_GENERIC, "tiny scales: no word or a positive scale");
}

/// The level's q4a fit (candidates in lanes) gives the scalar reference's word and codes: random, shifted,
/// weighted, tiny and huge groups, constant groups, zeros and padding, both rounding modes.
static void test_q4a_fit_level(int isa) {
    enum { N = 64 };
    float x[N], w[N];
    int ok = 1;
    for (int trial = 0; trial < 600; trial++) {
        const int n = trial % 3 == 0 ? 32 : trial % 3 == 1 ? 64 : 40;
        const float scale = trial % 7 == 0 ? 1e-6f : trial % 7 == 1 ? 3e3f : 1.0f;
        for (int i = 0; i < n; i++) {
            x[i] = trial % 11 == 0 ? 0.5f : (uniform() - (trial % 4) * 0.2f) * scale;
            if (n == 40 && i >= 34) x[i] = 0;
            w[i] = uniform() + 0.01f;
        }
        if (trial % 13 == 0)
            for (int i = 0; i < n; i++) x[i] = 0;
        for (int truncate = 0; truncate <= 1; truncate++) {
            const float *weights = trial % 2 ? w : NULL;
            int8_t a[N], b[N];
            ok &= edge_fit_q4a(isa, x, weights, n, a, truncate) == edge_fit_q4a_reference(x, weights, n, b, truncate) && memcmp(a, b, (size_t)n) == 0;
        }
    }
    check(ok, "q4a fit", isa, "vector against scalar");
}

static void test_quantizer(int isa) {
    enum { N = 32 * 9 };
    float inputs[6][N];
    for (int i = 0; i < N; i++) {
        inputs[0][i] = (uniform() - 0.5f) * 6.0f;
        inputs[1][i] = 0.0f;
        inputs[2][i] = (float)(i % 64) - 31.5f;
        inputs[3][i] = i % 2 == 0 ? 1e-30f : -3e38f;
        inputs[4][i] = (float)(i % 32) * 0.5f;  // exact .5 ties after scaling
        inputs[5][i] = (uniform() - 0.5f) * 1e-3f;
    }
    for (int k = 0; k < 6; k++) {
        int8_t q0[N], q1[N];
        float s0[9], s1[9];
        memset(q1, 99, sizeof q1);
        edge_quantize_q8_blocks(EDGE_ISA_GENERIC, inputs[k], 9, q0, s0);
        edge_quantize_q8_blocks(isa, inputs[k], 9, q1, s1);
        char detail[64];
        snprintf(detail, sizeof detail, "input %d", k);
        check(memcmp(q0, q1, sizeof q0) == 0 && memcmp(s0, s1, sizeof s0) == 0, "quantizer", isa, detail);
    }
}

/// Attention kernels against generic, relative to the sum of |terms| (only the addition order differs).
static void test_attention(int isa) {
    int hds[] = { 8, 13, 32, 64, 96, 128 };
    int counts[] = { 1, 2, 7, 64, 100 };
    for (size_t h = 0; h < sizeof hds / sizeof hds[0]; h++) {
        for (size_t c = 0; c < sizeof counts / sizeof counts[0]; c++) {
            int hd = hds[h], npos = counts[c], nb = hd / 32;
            float *q = malloc(sizeof(float) * (size_t)hd), *p = malloc(sizeof(float) * (size_t)npos);
            guarded gk = guarded_alloc(sizeof(uint16_t) * (size_t)(npos * hd)), gv = guarded_alloc((size_t)(npos * hd));
            guarded gs = guarded_alloc(sizeof(uint16_t) * (size_t)(npos * (nb ? nb : 1)));
            uint16_t *k16 = (uint16_t *)gk.data, *s16 = (uint16_t *)gs.data;
            int8_t *v8 = (int8_t *)gv.data;
            float *e = malloc(sizeof(float) * (size_t)(npos > hd ? npos : hd)), *o = malloc(sizeof(float) * (size_t)(npos > hd ? npos : hd));
            for (int d = 0; d < hd; d++) q[d] = uniform() - 0.5f;
            for (int j = 0; j < npos; j++) p[j] = uniform();
            for (int i = 0; i < npos * hd; i++) {
                k16[i] = (uint16_t)(to_half(uniform() * 2.0f + 0.01f) | (next_random() & 1 ? 0x8000 : 0));
                v8[i] = (int8_t)((int)(next_random() % 255) - 127);
            }
            for (int i = 0; i < npos * nb; i++) s16[i] = to_half(uniform() * 0.02f + 1e-3f);
            char detail[96];
            snprintf(detail, sizeof detail, "hd %d positions %d", hd, npos);
            // f16 scores
            edge_attn_scores_f16(EDGE_ISA_GENERIC, q, k16, npos, hd, e);
            edge_attn_scores_f16(isa, q, k16, npos, hd, o);
            int ok = 1;
            for (int j = 0; j < npos; j++) {
                double mag = 0;
                for (int d = 0; d < hd; d++) mag += fabs((double)q[d] * edge_half_to_float(k16[j * hd + d]));
                ok &= fabs((double)o[j] - e[j]) <= 4.0 * (hd + 8) * 1.2e-7 * mag + 1e-30;
            }
            check(ok, "attention scores f16", isa, detail);
            // f16 values, accumulated onto a non-zero start
            for (int d = 0; d < hd; d++) e[d] = o[d] = (float)d * 0.25f;
            edge_attn_values_f16(EDGE_ISA_GENERIC, p, k16, npos, hd, e);
            edge_attn_values_f16(isa, p, k16, npos, hd, o);
            ok = 1;
            for (int d = 0; d < hd; d++) {
                double mag = (double)d * 0.25;
                for (int j = 0; j < npos; j++) mag += fabs((double)p[j] * edge_half_to_float(k16[j * hd + d]));
                ok &= fabs((double)o[d] - e[d]) <= 4.0 * (npos + 8) * 1.2e-7 * mag + 1e-30;
            }
            check(ok, "attention values f16", isa, detail);
            // q8 values for 1 to 9 queries (probability rows of npos, outputs of hd: every tile width and the
            // mixes of them), heads of whole blocks only
            if (nb > 0 && hd % 32 == 0) {
                for (int nq = 1; nq <= 9; nq++) {
                    float *pq = malloc(sizeof(float) * (size_t)(nq * npos));
                    float *eq = malloc(sizeof(float) * (size_t)(nq * hd)), *oq = malloc(sizeof(float) * (size_t)(nq * hd));
                    for (int i = 0; i < nq * npos; i++) pq[i] = uniform();
                    for (int i = 0; i < nq * hd; i++) eq[i] = oq[i] = 1.0f - (float)(i % hd) * 0.01f;
                    edge_attn_values_q8(EDGE_ISA_GENERIC, pq, npos, nq, v8, s16, npos, hd, eq, hd);
                    edge_attn_values_q8(isa, pq, npos, nq, v8, s16, npos, hd, oq, hd);
                    ok = 1;
                    for (int qi = 0; qi < nq; qi++)
                        for (int d = 0; d < hd; d++) {
                            double mag = fabs(1.0 - d * 0.01);
                            for (int j = 0; j < npos; j++)
                                mag += fabs((double)pq[qi * npos + j] * edge_half_to_float(s16[j * nb + d / 32]) * v8[j * hd + d]);
                            ok &= fabs((double)oq[qi * hd + d] - eq[qi * hd + d]) <= 4.0 * (npos + 8) * 1.2e-7 * mag + 1e-30;
                        }
                    char qdetail[128];
                    snprintf(qdetail, sizeof qdetail, "%s, %d queries", detail, nq);
                    check(ok, "attention values q8", isa, qdetail);
                    free(pq); free(eq); free(oq);
                }
            }
            free(q); free(p); free(e); free(o);
            guarded_free(gk); guarded_free(gv); guarded_free(gs);
        }
    }
}

/// Distance in units in the last place between two finite non-negative floats.
static int64_t ulps(float a, float b) {
    int32_t ia, ib;
    memcpy(&ia, &a, sizeof ia);
    memcpy(&ib, &b, sizeof ib);
    return ia > ib ? (int64_t)ia - ib : (int64_t)ib - ia;
}

/// The softmax steps of this level against the generic ones, on rows of 0-70 scores (vector bodies and
/// tails) spread over [-100, 10] around their maximum, including the ends of exp's range.
static void test_softmax(int isa) {
    float a[80], b[80], row[80], scaled[80];
    int ok_max = 1, ok_exp = 1, ok_sum = 1;
    int64_t worst = 0;
    for (int trial = 0; trial < 300; trial++) {
        int n = trial % 71;
        float spread = (float[]){ 1.0f, 30.0f, 110.0f }[trial % 3];
        for (int j = 0; j < n; j++) row[j] = (uniform() - 0.9f) * spread;
        if (n > 9) { row[3] = -87.0f; row[5] = -87.5f; row[7] = -88.0f; row[9] = 0.0f; }
        float scale = 0.125f + uniform();
        memcpy(a, row, sizeof row);
        memcpy(b, row, sizeof row);
        float ma = edge_scale_max(EDGE_ISA_GENERIC, a, n, scale), mb = edge_scale_max(isa, b, n, scale);
        ok_max &= ma == mb && memcmp(a, b, sizeof(float) * (size_t)n) == 0;
        float m = n ? ma : 0.0f;
        memcpy(scaled, a, sizeof scaled);
        float sa = edge_exp_sum(EDGE_ISA_GENERIC, a, n, m), sb = edge_exp_sum(isa, b, n, m);
        double exact = 0;
        for (int j = 0; j < n; j++) {
            float arg = scaled[j] - m;
            exact += b[j];
            if (arg < -87.33654475f && isa != EDGE_ISA_GENERIC) ok_exp &= b[j] == 0.0f;
            else {
                int64_t u = ulps(a[j], b[j]);
                worst = u > worst ? u : worst;
                ok_exp &= u <= 2;
            }
        }
        ok_sum &= fabs((double)sb - exact) <= (n + 1) * 1.2e-7 * exact && fabs((double)sa - sb) <= 2.0 * (n + 1) * 1.2e-7 * exact + 1e-37;
    }
    float nan_row[8] = { 0, -1, -2, NAN, -4, -5, -6, -7 };
    edge_exp_sum(isa, nan_row, 8, 0.0f);
    ok_exp &= isnan(nan_row[3]) && nan_row[0] == 1.0f;
    char detail[64];
    snprintf(detail, sizeof detail, "300 rows, worst %lld ulp", (long long)worst);
    check(ok_max, "softmax scale and max", isa, "300 rows");
    check(ok_exp, "softmax exp", isa, detail);
    check(ok_sum, "softmax sum", isa, "300 rows");
}

/// SwiGLU of this level against the generic loop: within 4 ulp (exp's 2, the division's and the
/// product's roundings), on lengths 0-40 and gates over [-120, 120] (exp's clamps on both sides).
static void test_swiglu(int isa) {
    float g[40], u[40], a[40], b[40];
    int ok = 1;
    int64_t worst = 0;
    for (int trial = 0; trial < 200; trial++) {
        int n = trial % 41;
        float spread = (float[]){ 4.0f, 30.0f, 240.0f }[trial % 3];
        for (int i = 0; i < n; i++) {
            g[i] = (uniform() - 0.5f) * spread;
            u[i] = uniform() - 0.5f;
        }
        memcpy(a, g, sizeof g);
        memcpy(b, g, sizeof g);
        edge_swiglu(EDGE_ISA_GENERIC, a, u, n);
        edge_swiglu(isa, b, u, n);
        for (int i = 0; i < n; i++) {
            int64_t d = (a[i] < 0) == (b[i] < 0) ? ulps(fabsf(a[i]), fabsf(b[i])) : INT32_MAX;
            if (fabsf(a[i]) < 1e-30f && fabsf(b[i]) < 1e-30f) d = 0;
            worst = d > worst ? d : worst;
            ok &= d <= 4;
        }
    }
    char detail[64];
    snprintf(detail, sizeof detail, "200 rows, worst %lld ulp", (long long)worst);
    check(ok, "swiglu", isa, detail);
}

/// GeGLU of this level against tanh GELU in double, 0.5 g (1 + tanh(u)) up: within 2e-6 |g up| (the SIMD levels'
/// g / (1 + exp(-2u)) and the generic tanhf), for gates from -120 to 120 and every tail length.
static void test_geglu(int isa) {
    float g[40], u[40], b[40];
    int ok = 1;
    double worst = 0;
    for (int trial = 0; trial < 300; trial++) {
        int n = trial % 41;
        float spread = (float[]){ 2.0f, 12.0f, 240.0f }[trial % 3];
        for (int i = 0; i < n; i++) {
            g[i] = (uniform() - 0.5f) * spread;
            u[i] = uniform() - 0.5f;
        }
        memcpy(b, g, sizeof g);
        edge_geglu(isa, b, u, n);
        for (int i = 0; i < n; i++) {
            const double x = g[i], exact = 0.5 * x * (1 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))) * u[i];
            const double error = fabs(b[i] - exact) / (fabs(x * u[i]) + 1e-30);
            worst = error > worst ? error : worst;
            ok &= error <= 2e-6;
        }
    }
    char detail[64];
    snprintf(detail, sizeof detail, "300 rows, worst %.2g of |g up|", worst);
    check(ok, "geglu", isa, detail);
}

/// The q4 group fit of this level against the scalar reference: identical scale and codes.
static void test_q4_fit(int isa) {
    float x[256], w[256];
    int8_t a[256], b[256];
    int ok = 1;
    for (int trial = 0; trial < 400; trial++) {
        const int n = (int[]){ 8, 32, 64, 256 }[trial % 4];
        const float scale = (float[]){ 1.0f, 1e-3f, 3e4f, 1e-7f, 1e6f }[(trial / 4) % 5];
        for (int i = 0; i < n; i++) {
            x[i] = (uniform() - 0.5f) * scale * (trial % 7 == 0 && i > n / 2 ? 0.0f : 1.0f);
            w[i] = trial % 2 ? 1.0f : uniform() * 4.0f;
        }
        // Unweighted (NULL, the uncalibrated converter's call) every third trial.
        const float *weights = trial % 3 == 0 ? NULL : w;
        for (int truncate = 0; truncate <= 1; truncate++) {
            ok &= edge_fit_q4(isa, x, weights, n, a, truncate) == edge_fit_q4_reference(x, weights, n, b, truncate) &&
                  memcmp(a, b, (size_t)n) == 0;
        }
    }
    check(ok, "q4 group fit", isa, "400 groups, unweighted, unit and random weights, both roundings");
}

/// GPTQ's double dot product, y -= a·x and the Gram rows of this level against plain loops in the same order:
/// identical bits (the references must not fuse multiply-adds either: GCC contracts by default on arm64).
#if defined(__clang__)
static void test_gptq_arithmetic(int isa) {
#pragma clang fp contract(off)
#else
__attribute__((optimize("fp-contract=off"))) static void test_gptq_arithmetic(int isa) {
#endif
    double a[80], b[80], y[80], yr[80];
    float x[6 * 40], xb[6 * 40], g[40 * 40], gr[40 * 40];
    int ok = 1;
    for (int n = 0; n <= 80; n++) {
        for (int i = 0; i < n; i++) a[i] = (uniform() - 0.5) * 1e3, b[i] = (uniform() - 0.5) * 1e-2, y[i] = yr[i] = uniform();
        double lane[16] = { 0 }, sum;
        int k = 0;
        for (; k + 16 <= n; k += 16)
            for (int l = 0; l < 16; l++) lane[l] += a[k + l] * b[k + l];
        for (int l = 0; l < 8; l++) lane[l] += lane[l + 8];
        sum = ((lane[0] + lane[4]) + (lane[2] + lane[6])) + ((lane[1] + lane[5]) + (lane[3] + lane[7]));
        for (; k < n; k++) sum += a[k] * b[k];
        const double got = edge_dot_f64(isa, a, b, n);
        ok &= memcmp(&got, &sum, sizeof sum) == 0;
        double segments[3];
        edge_dots_f64(isa, a, b, n, 32, segments);
        for (int s = 0; s * 32 < n; s++) {
            const double one = edge_dot_f64(EDGE_ISA_GENERIC, a + 32 * s, b + 32 * s, n - 32 * s < 32 ? n - 32 * s : 32);
            ok &= memcmp(&one, &segments[s], sizeof one) == 0;
        }
        edge_sub_scaled_f64(isa, y, a, 0.37, n);
        for (int j = 0; j < n; j++) yr[j] -= 0.37 * a[j];
        ok &= memcmp(y, yr, sizeof(double) * (size_t)n) == 0;
    }
    for (int width = 1; width <= 40; width += 13) {
        for (int i = 0; i < 6 * width; i++) x[i] = i % 5 == 0 ? 0.0f : uniform() - 0.5f;
        for (int i = 0; i < width * width; i++) g[i] = gr[i] = uniform();
        edge_gram_rows_f32(isa, x, NULL, 6, width, 0, width, g);
        for (int i = 0; i < width; i++)
            for (int t = 0; t < 6; t++)
                if (x[t * width + i] != 0)
                    for (int j = i; j < width; j++) gr[i * width + j] += x[t * width + i] * x[t * width + j];
        ok &= memcmp(g, gr, sizeof(float) * (size_t)(width * width)) == 0;
        // Cross moments with the second input reversed (rows 1 and up: a partial range).
        for (int i = 0; i < 6 * width; i++) xb[i] = x[6 * width - 1 - i];
        for (int i = 0; i < width * width; i++) g[i] = gr[i] = uniform();
        edge_gram_rows_f32(isa, x, xb, 6, width, 1, width, g);
        for (int i = 1; i < width; i++)
            for (int t = 0; t < 6; t++)
                if (x[t * width + i] != 0)
                    for (int j = 0; j < width; j++) gr[i * width + j] += x[t * width + i] * xb[t * width + j];
        ok &= memcmp(g, gr, sizeof(float) * (size_t)(width * width)) == 0;
    }
    check(ok, "gptq arithmetic", isa, "dot, segment dots and y -= a x for n 0-80, Gram and cross rows for widths 1-40: identical bits");
}

static void test_level(int isa) {
    int before = failed;
    test_quantizer(isa);
    test_q4_fit(isa);
    test_q4a_fit_level(isa);
    test_gptq_arithmetic(isa);
    // 8 or 16 rows and more of 8 blocks or more reach the GEMM tiles (with row tails; 25 x 11 sends a
    // 9-row tail of odd groups to the 256-bit EVEX tile on AVX-512); 1,000 blocks make the q4
    // token chunks shorter than 13 tokens.
    int shapes[][2] = { { 1, 1 }, { 2, 2 }, { 3, 3 }, { 5, 9 }, { 8, 4 }, { 7, 32 }, { 4, 64 }, { 33, 5 },
                        { 16, 8 }, { 37, 9 }, { 25, 11 }, { 32, 33 }, { 16, 1000 } };
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int ntok = 1; ntok <= 13; ntok++)
            for (int q4 = 0; q4 <= 1; q4++) test_matmul(isa, q4, shapes[s][0], shapes[s][1], ntok);
    // 1 and 2 tokens: the fused decode products (q4o, q5o, q6); 5 and 9: the GEMM tiles' paths.
    for (int ntok = 1; ntok <= 9; ntok += ntok < 2 ? 1 : ntok < 5 ? 3 : 4) {
        for (int scheme = Q4A; scheme <= IQ4NL; scheme++) {
            test_matmul_nibbles(isa, scheme, 5, 3, ntok);
            test_matmul_nibbles(isa, scheme, 70, 9, ntok);
            test_matmul_nibbles(isa, scheme, 16, 40, ntok);
        }
        for (int bits = 5; bits <= 6; bits++) {
            test_matmul_planes(isa, bits, 5, 3, ntok);
            test_matmul_planes(isa, bits, 70, 9, ntok);
        }
    }
    for (int ntok = 2; ntok <= 17; ntok += 5)
        for (int scheme = TOKENWISE_Q8; scheme <= TOKENWISE_Q4O; scheme++) {
            test_tokenwise(isa, scheme, 37, 9, ntok);
            test_tokenwise(isa, scheme, 70, 40, ntok);
        }
    // One group and a tail row, three groups from the second (with a tail); rows of 1-40 blocks; 1-9 tokens.
    for (int kind = EDGE_PACKED_Q8; kind <= EDGE_PACKED_Q4O; kind++)
        for (int ntok = 1; ntok <= 9; ntok += 4) {
            test_packed(isa, kind, 17, 1, ntok);
            test_packed(isa, kind, 16, 9, ntok);
            test_packed(isa, kind, 53, 40, ntok);
            test_packed(isa, kind, 172, 6, ntok);
        }
    for (int q4 = 0; q4 <= 1; q4++) {
        test_row_range(isa, q4, 11, 3, 8);
        test_row_range(isa, q4, 40, 3, 37);
    }
    test_attention(isa);
    test_softmax(isa);
    test_swiglu(isa);
    test_geglu(isa);
    printf("%-8s %s\n", edge_isa_name(isa), failed == before ? "ok" : "FAILED");
}

/// Every level's kernel table: each required entry set, each entry the level's own kernel or a lower level's that
/// dispatch.c names, and the entries each level has of its own as expected (so a level that loses a kernel, or
/// gains an entry it leaves to a fallback, fails here rather than quietly running slower code). Prints the listing.
static void test_kernel_tables(int print) {
#define ALL_REQUIRED "quantize matmul_q8 matmul_q4 tokenwise_q8 tokenwise_q4 offsets packed decode_levels f16_to_f32 attn_values_q8 " \
                     "attn_scores_f16 attn_values_f16 scale_max exp_sum swiglu geglu fit_q4 fit_q4a dot_f64 dots_f64 sub_scaled_f64 gram_rows_f32"
#define MATRIX "matmul_q8 matmul_q4 tokenwise_q8 tokenwise_q4"
    static const char *const own[EDGE_ISA_COUNT] = {
        [EDGE_ISA_GENERIC] = ALL_REQUIRED,
#if defined(__x86_64__)
        [EDGE_ISA_AVX2] = "quantize " MATRIX " fused_q4o offsets packed decode_levels f16_to_f32 attn_values_q8 attn_scores_f16 attn_values_f16 "
                          "scale_max exp_sum swiglu geglu fit_q4 fit_q4a dot_f64 dots_f64 sub_scaled_f64 gram_rows_f32",
        [EDGE_ISA_AVX_VNNI] = MATRIX " fused_q4o packed",
        [EDGE_ISA_AVX512_VNNI] = MATRIX " planes_q5o planes_q6 fused_q4o offsets packed fit_q4 fit_q4a dot_f64 dots_f64 sub_scaled_f64 gram_rows_f32",
#elif defined(__aarch64__)
        [EDGE_ISA_NEON] = "quantize " MATRIX " decode_levels attn_values_q8 attn_scores_f16 attn_values_f16 scale_max exp_sum swiglu geglu",
        [EDGE_ISA_DOTPROD] = MATRIX,
        [EDGE_ISA_I8MM] = MATRIX,
#endif
    };
#undef MATRIX
#undef ALL_REQUIRED
    for (int isa = 0; isa < EDGE_ISA_COUNT; isa++) {
        char mine[1024] = "", listing[2048] = "";
        for (int e = 0; e < edge_kernel_count(); e++) {
            const int source = edge_kernel_source(isa, e);
            char detail[160];
            snprintf(detail, sizeof detail, "entry %s", edge_kernel_name(e));
            check(source >= 0 || !edge_kernel_required(e), "kernel table: required entry set", isa, detail);
            check(source <= isa, "kernel table: entries from the level or a lower one", isa, detail);
            if (source == isa) snprintf(mine + strlen(mine), sizeof mine - strlen(mine), "%s%s", *mine ? " " : "", edge_kernel_name(e));
            snprintf(listing + strlen(listing), sizeof listing - strlen(listing), " %s=%s", edge_kernel_name(e),
                     source < 0 ? "none" : source == isa ? "own" : edge_isa_name(source));
        }
        check(strcmp(mine, own[isa] ? own[isa] : "") == 0, "kernel table: the level's own entries", isa, mine);
        if (print) printf("table %s:%s\n", edge_isa_name(isa), listing);
    }
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--detect") == 0) {
        printf("detected: %s\n", edge_isa_name(edge_detect_isa()));
        return 0;
    }
    check(edge_isa_from_name("avx2") == EDGE_ISA_AVX2 && edge_isa_from_name("i8mm") == EDGE_ISA_I8MM
              && edge_isa_from_name("sse9") == -1 && edge_isa_name(EDGE_ISA_COUNT) == NULL,
          "level names", EDGE_ISA_GENERIC, "round trip");
    check(edge_isa_supported(edge_detect_isa()), "detected level is supported", EDGE_ISA_GENERIC, "");
    test_q4a_fit();
    test_q4n_fit();
    const char *forced = getenv("EDGELM_KERNELS");
    if (forced && *forced) {
        int isa = edge_isa_from_name(forced);
        if (isa < 0) { fprintf(stderr, "EDGELM_KERNELS=%s: no such kernel level\n", forced); return 2; }
        if (!edge_isa_supported(isa)) { fprintf(stderr, "EDGELM_KERNELS=%s: this CPU cannot run it\n", forced); return 3; }
        test_kernel_tables(0);
        test_level(isa);
    } else {
        printf("detected: %s\n", edge_isa_name(edge_detect_isa()));
        test_kernel_tables(1);
        for (int isa = 0; isa < EDGE_ISA_COUNT; isa++)
            if (edge_isa_supported(isa)) test_level(isa);
    }
    printf("kernels: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
