// q4n and iq4nl: 4-bit indices into a fixed non-uniform codebook of 16 int8 levels, EdgeLM's own or ggml's
// IQ4_NL one (see EdgeKernels.h). The matrix product
// decodes a chunk of rows to q8 blocks (each nibble looked up in the codebook with one byte shuffle per 16
// weights: `pshufb` on x86, `tbl` on arm64) and runs the level's q8 kernel on them, so every level has it and
// its integer dots are the q8 kernel's, exact.
#include "internal.h"
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

/// The levels, Lloyd-Max quantization points of group-normalised weights (each group of 32 of stories110M's
/// attention and FFN matrices divided by minus its largest-magnitude weight, so that weight sits at -127) with
/// one level held at 0 so that zeros and padding are exact (docs/QUANTIZATION.md). Ascending.
const int8_t edge_q4n_levels[16] = { -127, -103, -83, -67, -52, -38, -25, -12, 0, 13, 27, 41, 56, 72, 91, 113 };

/// ggml's IQ4_NL levels (`kvalues_iq4nl`), ascending; no level is 0.
const int8_t edge_iq4nl_levels[16] = { -127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113 };

/// Rows decoded per call of the q8 kernel: 32 rows of a 5632-wide matrix are 176 KiB of q8 blocks (L2).
enum { Q4N_CHUNK = 32 };

/// The index of the level of `levels` nearest v: a binary search over the midpoints between neighbouring levels;
/// a value on a midpoint goes up.
static int level_index(const int8_t *levels, float v) {
    int k = 0;
    for (int step = 8; step > 0; step /= 2)
        if (v >= 0.5f * (float)(levels[k + step - 1] + levels[k + step])) k += step;
    return k;
}

int edge_q4n_index(float v) { return level_index(edge_q4n_levels, v); }

int edge_iq4nl_index(float v) { return level_index(edge_iq4nl_levels, v); }

/// Decodes `nblocks` blocks of indices (16 bytes each) into q8 blocks of their levels (32 codes each).
void edge_generic_decode_levels(const int8_t *levels, const uint8_t *w, int64_t nblocks, int8_t *out) {
    for (int64_t b = 0; b < nblocks; b++)
        for (int j = 0; j < 16; j++) {
            out[b * 32 + j] = levels[w[b * 16 + j] & 15];
            out[b * 32 + 16 + j] = levels[w[b * 16 + j] >> 4];
        }
}

#if defined(__x86_64__)
__attribute__((target("ssse3"))) void edge_avx2_decode_levels(const int8_t *levels, const uint8_t *w, int64_t nblocks, int8_t *out) {
    const __m128i table = _mm_loadu_si128((const __m128i *)levels), low = _mm_set1_epi8(0x0F);
    for (int64_t b = 0; b < nblocks; b++) {
        const __m128i packed = _mm_loadu_si128((const __m128i *)(w + b * 16));
        _mm_storeu_si128((__m128i *)(out + b * 32), _mm_shuffle_epi8(table, _mm_and_si128(packed, low)));
        _mm_storeu_si128((__m128i *)(out + b * 32 + 16), _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(packed, 4), low)));
    }
}
#elif defined(__aarch64__)
void edge_neon_decode_levels(const int8_t *levels, const uint8_t *w, int64_t nblocks, int8_t *out) {
    const int8x16_t table = vld1q_s8(levels);
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8x16_t packed = vld1q_u8(w + b * 16);
        vst1q_s8(out + b * 32, vqtbl1q_s8(table, vandq_u8(packed, vdupq_n_u8(0x0F))));
        vst1q_s8(out + b * 32 + 16, vqtbl1q_s8(table, vshrq_n_u8(packed, 4)));
    }
}
#endif

/// The product of blocks of indices into `levels`: rows decoded to q8 in chunks, the level's q8 kernel on them.
static void matmul_levels(const edge_kernels *k, const int8_t *levels, EDGE_MATMUL_ARGS(uint8_t)) {
    const int64_t ngroups = (nblocks + gblocks - 1) / gblocks;
    // codes [Q4N_CHUNK, nblocks * 32]: the chunk's rows as q8 blocks.
    int8_t *codes = edge_scratch(0, (size_t)(Q4N_CHUNK * nblocks * 32));
    for (int64_t r = r0; r < r1; r += Q4N_CHUNK) {
        const int64_t n = r1 - r < Q4N_CHUNK ? r1 - r : Q4N_CHUNK;
        k->decode_levels(levels, w + r * nblocks * 16, n * nblocks, codes);
        k->matmul_q8(codes, ws + r * ngroups, nblocks, gblocks, 0, n, x, xs, ntok, out + r * ors, ors, ots);
    }
}

static void q4n_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (void)tokenwise;
    matmul_levels(k, edge_q4n_levels, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

static void iq4nl_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (void)tokenwise;
    matmul_levels(k, edge_iq4nl_levels, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

EDGE_SCHEME(q4n, q4n_product, 0)
EDGE_SCHEME(iq4nl, iq4nl_product, 0)

/// Σ w (x - s c)² for c the level of `levels` nearest x / s.
static float levels_error(const int8_t *levels, const float *x, const float *w, int64_t n, float s) {
    float e = 0;
    const float inverse = 1 / s;
    for (int64_t i = 0; i < n; i++) {
        const float d = x[i] - s * (float)levels[level_index(levels, x[i] * inverse)];
        e += (w ? w[i] : 1) * d * d;
    }
    return e;
}

/// The fit of `edge_fit_q4n` over any codebook.
static uint16_t fit_levels(const int8_t *levels, const float *x, const float *w, int64_t n, int8_t *codes) {
    // m: the group's largest-magnitude weight. Candidates s = ±f m / 127, f = 0.60, 0.61, ..., 1.30, so m lands
    // on or near either end of the codebook (-127 or 113) or inside it. A least-squares refit of each
    // candidate's codes, as q4 and q4a do, measured worse after sequential GPTQ (stories260K, whole
    // calibration half: 0.0345 against 0.0317 without it and with 0.86-1.16), so there is none.
    float m = 0;
    for (int64_t i = 0; i < n; i++) m = __builtin_fabsf(x[i]) > __builtin_fabsf(m) ? x[i] : m;
    uint16_t best = 0;
    float best_error = __builtin_inff();
    for (int sign = 0; sign < 2 && m != 0; sign++)
        for (int k = 0; k <= 70; k++) {
            const uint16_t word = edge_float_to_half((sign ? -m : m) / 127.0f * (0.60f + 0.01f * (float)k));
            const float s = edge_half_to_float(word);
            if (s == 0 || !__builtin_isfinite(s)) continue;
            const float e = levels_error(levels, x, w, n, s);
            if (e < best_error) {
                best_error = e;
                best = word;
            }
        }
    const float s = edge_half_to_float(best);
    for (int64_t i = 0; i < n; i++) codes[i] = best ? levels[level_index(levels, x[i] / s)] : 0;
    return best;
}

uint16_t edge_fit_q4n(const float *x, const float *w, int64_t n, int8_t *codes) { return fit_levels(edge_q4n_levels, x, w, n, codes); }

uint16_t edge_fit_iq4nl(const float *x, const float *w, int64_t n, int8_t *codes) { return fit_levels(edge_iq4nl_levels, x, w, n, codes); }
