// q4a: 4-bit codes with a zero point, q4o: 4-bit codes with an f16 scale and an f16 offset, and q5o: q4o with
// 5-bit codes (see EdgeKernels.h). The matrix product reuses each level's q4 kernel, whose nibble n stands for
// n - 8, and adds what the zero point or offset changes: s (n - z) = s (n - 8) + s (8 - z) and d n + m =
// d (n - 8) + (m + 8 d), so dot = q4 dot + Σ_groups o_g Σ_{blocks of g} xs_b Σ x_b with o = s (8 - z) or m + 8 d.
// Only the scale words need decoding; the kernels' inner loops are the q4 ones. q5o decodes each chunk of rows to
// q8 blocks of n - 16 (`edge_decode_q5o`) and runs the level's q8 kernel on them, with o = m + 16 d.
#include "exact.h"
#include "internal.h"

/// Rows decoded per call of the q4 kernel: their f16 scales and offsets fit in L1 for any realistic row.
enum { Q4A_CHUNK = 64 };

static inline uint16_t q4a_half(uint16_t word) { return (uint16_t)((word >> 4) << 3); }

typedef float v16f __attribute__((vector_size(64)));

/// Σ a[g] b[g] for g < n: eight lanes summed apart, then the lanes and the tail in order (vector code on every
/// target the compiler knows: two SSE or NEON registers per vector at the baseline).
EDGE_INLINE float dot_f32(const float *a, const float *b, int64_t n) {
    v8f acc = { 0 };
    int64_t g = 0;
    for (; g + 8 <= n; g += 8) {
        v8f va, vb;
        memcpy(&va, a + g, sizeof va);
        memcpy(&vb, b + g, sizeof vb);
        acc += va * vb;
    }
    float sum = 0;
    for (int l = 0; l < 8; l++) sum += acc[l];
    for (; g < n; g++) sum += a[g] * b[g];
    return sum;
}

uint16_t edge_q4a_scale_half(uint16_t word) { return q4a_half(word); }

/// The schemes of `q4a_matmul`.
enum { Q4A_WORDS = 0, Q4O_PAIRS = 1, Q5O_PAIRS = 2 };

/// The product, always inlined into one wrapper per vector width below so that the compiler vectorises
/// its loops (the sums of activation codes, the offsets, their products) for the level's registers. `kind`:
/// q4a's words, q4o's (scale, offset) half pairs, or q5o's (20-byte blocks, the same pairs).
/// `tokenwise`: each token computed as a call with it alone computes it (the q8/q4 token-wise kernels, each token's
/// offsets by the single-token sum), bit for bit.
EDGE_INLINE void q4a_matmul(const edge_kernels *k, int kind, int tokenwise, EDGE_MATMUL_ARGS(uint8_t)) {
    const int offset = kind != Q4A_WORDS, five = kind == Q5O_PAIRS;
    const int64_t ngroups = (nblocks + gblocks - 1) / gblocks, row_bytes = nblocks * (five ? 20 : 16);
    // halves [Q4A_CHUNK, ngroups]: the chunk's f16 scales; offsets [Q4A_CHUNK, ngroups]: s (8 - z);
    // transposed [ngroups, Q4A_CHUNK]: the offsets by group (rows past the chunk's end 0); sums [ngroups, ntok]:
    // Σ over the group's blocks of xs_b Σ x_b (token-major, [ntok, ngroups], when token-wise).
    uint16_t *halves = edge_scratch(0, (size_t)(Q4A_CHUNK * ngroups) * sizeof *halves);
    float *offsets = edge_scratch(1, (size_t)(Q4A_CHUNK * ngroups) * sizeof *offsets);
    float *transposed = edge_scratch(2, (size_t)(Q4A_CHUNK * ngroups) * sizeof *transposed);
    float *sums = edge_scratch(3, (size_t)(ntok * ngroups) * sizeof *sums);
    int8_t *decoded = five ? edge_scratch(4, (size_t)(Q4A_CHUNK * nblocks * 32)) : NULL;  // [Q4A_CHUNK, nblocks * 32] q5o's codes - 16
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t g = 0; g < ngroups; g++) {
            float s = 0;
            for (int64_t b = g * gblocks, end = edge_group_end(g, gblocks, nblocks); b < end; b++) {
                int32_t sum = 0;
                for (int i = 0; i < 32; i++) sum += x[(t * nblocks + b) * 32 + i];
                s += xs[t * nblocks + b] * (float)sum;
            }
            sums[tokenwise ? t * ngroups + g : g * ntok + t] = s;
        }
    for (int64_t r = r0; r < r1; r += Q4A_CHUNK) {
        const int64_t n = r1 - r < Q4A_CHUNK ? r1 - r : Q4A_CHUNK;
        if (offset) {
            // Each group's (d, m) half pair read as one little-endian word, split in one pass (strided 16-bit reads
            // compiled to element-by-element gathers, a third of SmolLM2's q4o decode): the m halves go to
            // offsets' memory for a moment, their floats to transposed, then the d halves' floats to offsets.
            uint16_t *m_halves = (uint16_t *)offsets;
            const uint8_t *pairs = (const uint8_t *)(ws + 2 * r * ngroups);
            for (int64_t k = 0; k < n * ngroups; k++) {
                uint32_t pair;
                memcpy(&pair, pairs + 4 * k, sizeof pair);
                halves[k] = (uint16_t)pair;
                m_halves[k] = (uint16_t)(pair >> 16);
            }
            k->f16_to_f32(m_halves, transposed, n * ngroups);
            k->f16_to_f32(halves, offsets, n * ngroups);
            for (int64_t k = 0; k < n * ngroups; k++) offsets[k] = transposed[k] + (five ? 16 : 8) * offsets[k];
        } else {
            for (int64_t k = 0; k < n * ngroups; k++) halves[k] = q4a_half(ws[r * ngroups + k]);
            k->f16_to_f32(halves, offsets, n * ngroups);
            for (int64_t k = 0; k < n * ngroups; k++) offsets[k] *= (float)(8 - (int)(ws[r * ngroups + k] & 15));
        }
        if (five) {
            edge_decode_q5o(w + r * row_bytes, n * nblocks, decoded);
            (tokenwise ? k->tokenwise_q8 : k->matmul_q8)(decoded, halves, nblocks, gblocks, 0, n, x, xs, ntok, out + r * ors, ors, ots);
        } else {
            (tokenwise ? k->tokenwise_q4 : k->matmul_q4)(w + r * row_bytes, halves, nblocks, gblocks, 0, n, x, xs, ntok, out + r * ors, ors, ots);
        }
        if (ntok == 1 || tokenwise) {
            for (int64_t t = 0; t < ntok; t++)
                for (int64_t i = 0; i < n; i++) out[(r + i) * ors + t * ots] += dot_f32(offsets + i * ngroups, sums + t * ngroups, ngroups);
            continue;
        }
        // A batch: per token, the groups' token sums times their offsets, the chunk's 64 rows held in four
        // 16-lane accumulators (the offsets transposed so that each group's are contiguous).
        for (int64_t g = 0; g < ngroups; g++)
            for (int64_t i = 0; i < Q4A_CHUNK; i++) transposed[g * Q4A_CHUNK + i] = i < n ? offsets[i * ngroups + g] : 0;
        for (int64_t t = 0; t < ntok; t++) {
            v16f acc[Q4A_CHUNK / 16] = { { 0 } };
            for (int64_t g = 0; g < ngroups; g++) {
                const float sum = sums[g * ntok + t];
                for (int k = 0; k < Q4A_CHUNK / 16; k++) {
                    v16f o;
                    memcpy(&o, transposed + g * Q4A_CHUNK + 16 * k, sizeof o);
                    acc[k] += sum * o;
                }
            }
            // Through a flat array: indexing acc[i / 16][i % 16] compiled to gathers (a third of this pass).
            float row_offsets[Q4A_CHUNK];
            memcpy(row_offsets, acc, sizeof row_offsets);
            for (int64_t i = 0; i < n; i++) out[(r + i) * ors + t * ots] += row_offsets[i];
        }
    }
}

/// One vector width's compilation of `q4a_matmul` (the table's `offsets` entry).
#define EDGE_OFFSETS(PREFIX, ATTRIBUTES)                                                                        \
    ATTRIBUTES void PREFIX##_offsets(const edge_kernels *k, int kind, int tokenwise, EDGE_MATMUL_ARGS(uint8_t)) { \
        q4a_matmul(k, kind, tokenwise, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);              \
    }
EDGE_OFFSETS(edge_generic, )
#if defined(__x86_64__)
EDGE_OFFSETS(edge_avx512, __attribute__((target("avx512f,avx512bw,avx512vl,fma"))))
EDGE_OFFSETS(edge_avx2, __attribute__((target("avx2,fma"))))
#endif

static void q4a_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    k->offsets(k, Q4A_WORDS, tokenwise, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

/// q4o: the level's fused product for decode, token-wise batches and the residual pair where it has one, else the
/// offset product.
static void q4o_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    if (k->fused_q4o && edge_fused_groups(gblocks, nblocks, ntok, tokenwise))
        return k->fused_q4o(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    k->offsets(k, Q4O_PAIRS, tokenwise, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

/// q5o: the level's register-built kernel for a few tokens where it has one, else the offset product.
static void q5o_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (void)tokenwise;
    if (k->planes_q5o && ntok <= EDGE_PLANES_FUSED_TOKENS) return k->planes_q5o(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    k->offsets(k, Q5O_PAIRS, 0, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

EDGE_SCHEME(q4a, q4a_product, 1)
EDGE_SCHEME(q4o, q4o_product, 1)
EDGE_SCHEME(q5o, q5o_product, 0)

/// v rounded to nearest even (toward zero with `truncate`) and clamped to [-z, 15 - z]. Clamping first (the
/// bounds are integers, so the order does not matter) keeps |v| small enough for the 1.5 * 2^23 rounding trick,
/// which the compiler inlines where nearbyintf would be a call.
static inline float q4a_code(float v, int z, int truncate) {
    v = v < (float)-z ? (float)-z : v > (float)(15 - z) ? (float)(15 - z) : v;
    return truncate ? (float)(int)v : (v + 12582912.0f) - 12582912.0f;
}

/// Σ w (x - s c)² and the refit sums Σ w x c, Σ w c² for codes c = clamp(round(x / s), -z, 15 - z).
static float q4a_error(const float *x, const float *w, int64_t n, float s, int z, int truncate, float *xc, float *cc) {
    float e = 0, a = 0, b = 0, inverse = 1 / s;
    for (int64_t i = 0; i < n; i++) {
        const float c = q4a_code(x[i] * inverse, z, truncate), wi = w ? w[i] : 1, d = x[i] - s * c;
        e += wi * d * d;
        a += wi * x[i] * c;
        b += wi * c * c;
    }
    *xc = a;
    *cc = b;
    return e;
}

uint16_t edge_q4a_word(float s, int z) {
    uint32_t half = edge_float_to_half(s);
    uint32_t bits = (half + 4) >> 3;  // exponent and the top 7 mantissa bits, rounded
    // bits 0 (a scale under 4 half ulps) would be a zero scale with a nonzero word: its codes x / 0 are not numbers.
    if (bits == 0 || half >= 0x7C00 || bits >= 0xF80) return 0;
    return (uint16_t)(bits << 4 | (uint32_t)z);
}

/// The group's range with 0 in it: [min(x, 0), max(x, 0)].
EDGE_INLINE void q4a_range(const float *x, int64_t n, float *lo, float *hi) {
    float a = 0, b = 0;
    for (int64_t i = 0; i < n; i++) {
        a = x[i] < a ? x[i] : a;
        b = x[i] > b ? x[i] : b;
    }
    *lo = a;
    *hi = b;
}

/// Writes the codes of word `best` (all 0 for word 0, an all-zero group) and returns it.
EDGE_INLINE uint16_t q4a_codes(const float *x, int64_t n, uint16_t best, int8_t *codes, int truncate) {
    const int z = best & 15;
    const float inverse = best ? 1 / edge_half_to_float(q4a_half(best)) : 0;
    for (int64_t i = 0; i < n; i++) codes[i] = best ? (int8_t)q4a_code(x[i] * inverse, z, truncate) : 0;
    return best;
}

/// The candidates of a group's fit in the order the search takes them: per scaled range k, per zero point z
/// (the one nearest -min(x, 0) / range and its neighbours, within [0, 15]), the range's word and then the
/// least-squares refit of its codes. Returns how many pairs (word, refit) were listed.
EDGE_INLINE int q4a_candidates(float lo, float hi, uint16_t *words, int *zeros) {
    int m = 0;
    for (int k = 0; k < 16; k++) {
        const float range = (hi - lo) / 15 * (0.80f + 0.02f * (float)k);
        const int z0 = (int)__builtin_nearbyintf(-lo / range);
        for (int z = z0 - 1; z <= z0 + 1; z++) {
            if (z < 0 || z > 15) continue;
            words[m] = edge_q4a_word(range, z);
            zeros[m++] = z;
        }
    }
    return m;
}

/// q4a_error for eight candidates (scales and zero points, one per lane); lanes sum in element order as the
/// scalar function does, so every lane gives its bits.
EDGE_INLINE void q4a_errors8(const float *x, const float *w, int64_t n, const float *scales, const float *zeros, int truncate,
                             v8f *e, v8f *xc, v8f *cc) {
    v8f s, z;
    memcpy(&s, scales, sizeof s);
    memcpy(&z, zeros, sizeof z);
    const v8f inverse = 1 / s, lo = -z, hi = 15 - z, magic = (v8f){ 0 } + 12582912.0f;
    v8f ea = { 0 }, aa = { 0 }, ba = { 0 };
    for (int64_t i = 0; i < n; i++) {
        const v8f xi = (v8f){ 0 } + x[i], wi = (v8f){ 0 } + (w ? w[i] : 1);
        v8f v = xi * inverse;
        v8i below = v < lo;
        v = (v8f)(((v8i)lo & below) | ((v8i)v & ~below));
        v8i above = v > hi;
        v = (v8f)(((v8i)hi & above) | ((v8i)v & ~above));
        const v8f c = truncate ? __builtin_convertvector(__builtin_convertvector(v, v8i), v8f) : (v + magic) - magic;
        const v8f d = xi - s * c;
        ea += wi * d * d;
        aa += wi * xi * c;
        ba += wi * c * c;
    }
    *e = ea;
    *xc = aa;
    *cc = ba;
}

/// The errors of `m` candidate words (0: none; its error stays infinite), eight at a time; also each one's refit word.
EDGE_INLINE void q4a_evaluate(const float *x, const float *w, int64_t n, int truncate, const uint16_t *words, const int *zeros,
                              int m, float *errors, uint16_t *refits) {
    for (int j = 0; j < m; j += 8) {
        float s[8], z[8];
        for (int l = 0; l < 8; l++) {
            const int valid = j + l < m && words[j + l];
            s[l] = valid ? edge_half_to_float(q4a_half(words[j + l])) : 1;
            z[l] = j + l < m ? (float)zeros[j + l] : 0;
        }
        v8f e, xc, cc;
        q4a_errors8(x, w, n, s, z, truncate, &e, &xc, &cc);
        for (int l = 0; l < 8 && j + l < m; l++) {
            const int valid = words[j + l] != 0;
            errors[j + l] = valid ? e[l] : __builtin_inff();
            refits[j + l] = valid && cc[l] > 0 && xc[l] > 0 ? edge_q4a_word(xc[l] / cc[l], zeros[j + l]) : 0;
        }
    }
}

/// The fit, candidates in lanes: the same choice as the scalar search (the first candidate with the least
/// error, each range's word before its refit).
EDGE_INLINE uint16_t fit_q4a_lanes(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    float lo, hi;
    q4a_range(x, n, &lo, &hi);
    uint16_t best = 0;
    if (hi > lo) {
        uint16_t words[48], refits[48], unused[48];
        int zeros[48];
        float errors[48], refit_errors[48];
        const int m = q4a_candidates(lo, hi, words, zeros);
        q4a_evaluate(x, w, n, truncate, words, zeros, m, errors, refits);
        q4a_evaluate(x, w, n, truncate, refits, zeros, m, refit_errors, unused);
        float best_error = __builtin_inff();
        for (int j = 0; j < m; j++) {
            if (words[j] && errors[j] < best_error) {
                best_error = errors[j];
                best = words[j];
            }
            if (words[j] && refits[j] && refit_errors[j] < best_error) {
                best_error = refit_errors[j];
                best = refits[j];
            }
        }
    }
    return q4a_codes(x, n, best, codes, truncate);
}

uint16_t edge_fit_q4a_reference(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    float lo, hi;
    q4a_range(x, n, &lo, &hi);
    uint16_t best = 0;
    float best_error = __builtin_inff();
    if (hi > lo) {
        uint16_t words[48];
        int zeros[48];
        const int m = q4a_candidates(lo, hi, words, zeros);
        for (int j = 0; j < m; j++) {
            uint16_t word = words[j];
            for (int pass = 0; pass < 2 && word; pass++) {
                float xc, cc;
                const float e = q4a_error(x, w, n, edge_half_to_float(q4a_half(word)), zeros[j], truncate, &xc, &cc);
                if (e < best_error) {
                    best_error = e;
                    best = word;
                }
                word = cc > 0 && xc > 0 ? edge_q4a_word(xc / cc, zeros[j]) : 0;  // the least-squares scale of these codes
            }
        }
    }
    return q4a_codes(x, n, best, codes, truncate);
}

uint16_t edge_generic_fit_q4a(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return fit_q4a_lanes(x, w, n, codes, truncate);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) uint16_t edge_avx512_fit_q4a(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return fit_q4a_lanes(x, w, n, codes, truncate);
}

__attribute__((target("avx2"))) uint16_t edge_avx2_fit_q4a(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return fit_q4a_lanes(x, w, n, codes, truncate);
}
#endif
