// q4n: 4-bit indices into a fixed non-uniform codebook of 16 int8 levels (see EdgeKernels.h). The matrix product
// decodes a chunk of rows to q8 blocks (each nibble looked up in the codebook with one byte shuffle per 16
// weights: `pshufb` on x86, `tbl` on arm64) and runs the level's q8 kernel on them, so every level has it and
// its integer dots are the q8 kernel's, exact.
#include "internal.h"
#include <stdlib.h>
#if defined(__x86_64__)
#include <immintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

/// The levels, Lloyd-Max quantization points of group-normalised weights (each group of 32 of stories110M's
/// attention and FFN matrices divided by minus its largest-magnitude weight, so that weight sits at -127) with
/// one level held at 0 so that zeros and padding are exact (docs/QUANTIZATION.md). Ascending.
const int8_t edge_q4n_levels[16] = { -127, -103, -83, -67, -52, -38, -25, -12, 0, 13, 27, 41, 56, 72, 91, 113 };

/// Rows decoded per call of the q8 kernel: 32 rows of a 5632-wide matrix are 176 KiB of q8 blocks (L2).
enum { Q4N_CHUNK = 32 };

int edge_q4n_index(float v) {
    // Binary search over the midpoints between neighbouring levels; a value on a midpoint goes up.
    int k = 0;
    for (int step = 8; step > 0; step /= 2)
        if (v >= 0.5f * (float)(edge_q4n_levels[k + step - 1] + edge_q4n_levels[k + step])) k += step;
    return k;
}

/// Decodes `nblocks` q4n blocks (16 bytes each) into q8 blocks (32 codes each).
static void decode_scalar(const uint8_t *w, int64_t nblocks, int8_t *out) {
    for (int64_t b = 0; b < nblocks; b++)
        for (int j = 0; j < 16; j++) {
            out[b * 32 + j] = edge_q4n_levels[w[b * 16 + j] & 15];
            out[b * 32 + 16 + j] = edge_q4n_levels[w[b * 16 + j] >> 4];
        }
}

#if defined(__x86_64__)
__attribute__((target("ssse3"))) static void decode_ssse3(const uint8_t *w, int64_t nblocks, int8_t *out) {
    const __m128i table = _mm_loadu_si128((const __m128i *)edge_q4n_levels), low = _mm_set1_epi8(0x0F);
    for (int64_t b = 0; b < nblocks; b++) {
        const __m128i packed = _mm_loadu_si128((const __m128i *)(w + b * 16));
        _mm_storeu_si128((__m128i *)(out + b * 32), _mm_shuffle_epi8(table, _mm_and_si128(packed, low)));
        _mm_storeu_si128((__m128i *)(out + b * 32 + 16), _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(packed, 4), low)));
    }
}
#elif defined(__aarch64__)
static void decode_neon(const uint8_t *w, int64_t nblocks, int8_t *out) {
    const int8x16_t table = vld1q_s8(edge_q4n_levels);
    for (int64_t b = 0; b < nblocks; b++) {
        const uint8x16_t packed = vld1q_u8(w + b * 16);
        vst1q_s8(out + b * 32, vqtbl1q_s8(table, vandq_u8(packed, vdupq_n_u8(0x0F))));
        vst1q_s8(out + b * 32 + 16, vqtbl1q_s8(table, vshrq_n_u8(packed, 4)));
    }
}
#endif

/// The level's decoder: the generic level keeps to portable C.
static void decode(int isa, const uint8_t *w, int64_t nblocks, int8_t *out) {
#if defined(__x86_64__)
    if (isa != EDGE_ISA_GENERIC) return decode_ssse3(w, nblocks, out);
#elif defined(__aarch64__)
    if (isa != EDGE_ISA_GENERIC) return decode_neon(w, nblocks, out);
#endif
    decode_scalar(w, nblocks, out);
}

void edge_matmul_q4n(int isa, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                     int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                     float *out, int64_t ors, int64_t ots) {
    const int64_t ngroups = (nblocks + gblocks - 1) / gblocks;
    // codes [Q4N_CHUNK, nblocks * 32]: the chunk's rows as q8 blocks.
    int8_t *codes = malloc((size_t)(Q4N_CHUNK * nblocks * 32));
    if (!codes) abort();
    for (int64_t r = r0; r < r1; r += Q4N_CHUNK) {
        const int64_t n = r1 - r < Q4N_CHUNK ? r1 - r : Q4N_CHUNK;
        decode(isa, w + r * nblocks * 16, n * nblocks, codes);
        edge_matmul_q8(isa, codes, ws + r * ngroups, nblocks, gblocks, 0, n, x, xs, ntok, out + r * ors, ors, ots);
    }
    free(codes);
}

/// Σ w (x - s c)² for c the level nearest x / s.
static float q4n_error(const float *x, const float *w, int64_t n, float s) {
    float e = 0;
    const float inverse = 1 / s;
    for (int64_t i = 0; i < n; i++) {
        const float d = x[i] - s * (float)edge_q4n_levels[edge_q4n_index(x[i] * inverse)];
        e += (w ? w[i] : 1) * d * d;
    }
    return e;
}

uint16_t edge_fit_q4n(const float *x, const float *w, int64_t n, int8_t *codes) {
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
            const float e = q4n_error(x, w, n, s);
            if (e < best_error) {
                best_error = e;
                best = word;
            }
        }
    const float s = edge_half_to_float(best);
    for (int64_t i = 0; i < n; i++) codes[i] = best ? edge_q4n_levels[edge_q4n_index(x[i] / s)] : 0;
    return best;
}
