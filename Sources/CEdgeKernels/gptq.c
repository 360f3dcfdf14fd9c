// The arithmetic of GPTQ (Sources/EdgeLM/Quantization/GPTQ.swift) and of collecting its second moments
// (Calibration.swift): a double dot product, y -= a·x, and the rows of a Gram matrix's upper triangle. Each is
// written once in 8-lane vectors and compiled for every x86 level; with no fused multiply-add and a fixed
// summation order, every level gives the generic code's bits (the C kernel test compares them).
#include "internal.h"
#include "exact.h"

// The vectors never cross a call: every body is inlined into its level's wrapper.

/// Σ a[k] b[k]: lanes k mod 16 in two 8-lane sums, added lane-wise, then pairwise (lanes l and l + 4, then
/// 0-2 and 1-3 of those, then the two), then the tail past the last multiple of 16 in order.
EDGE_INLINE double dot_body(const double *a, const double *b, int64_t n) {
    v8d lo = { 0 }, hi = { 0 };
    int64_t k = 0;
    for (; k + 16 <= n; k += 16) {
        v8d a0, a1, b0, b1;
        memcpy(&a0, a + k, sizeof a0);
        memcpy(&a1, a + k + 8, sizeof a1);
        memcpy(&b0, b + k, sizeof b0);
        memcpy(&b1, b + k + 8, sizeof b1);
        lo += a0 * b0;
        hi += a1 * b1;
    }
    const v8d s = lo + hi;
    double sum = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    for (; k < n; k++) sum += a[k] * b[k];
    return sum;
}

/// out[s] = dot_body over segment s (elements [s · segment, min(n, (s + 1) · segment))) for every segment.
EDGE_INLINE void dots_body(const double *a, const double *b, int64_t n, int64_t segment, double *out) {
    for (int64_t s = 0, lo = 0; lo < n; s++, lo += segment) out[s] = dot_body(a + lo, b + lo, n - lo < segment ? n - lo : segment);
}

/// y[j] -= a · x[j].
EDGE_INLINE void sub_scaled_body(double *y, const double *x, double a, int64_t n) {
    int64_t j = 0;
    const v8d s = { a, a, a, a, a, a, a, a };
    for (; j + 8 <= n; j += 8) {
        v8d vx, vy;
        memcpy(&vx, x + j, sizeof vx);
        memcpy(&vy, y + j, sizeof vy);
        vy -= s * vx;
        memcpy(y + j, &vy, sizeof vy);
    }
    for (; j < n; j++) y[j] -= a * x[j];
}

/// Rows [i0, i1) of g ([width, width]) += Σ_t a_t b_tᵀ over `tokens` rows of a and b; with b NULL, the
/// upper triangle of Σ_t a_t a_tᵀ. Row i gets a_t[i] · b_t[j0...] token after token (j0 = i for the
/// triangle, else 0; tokens with a_t[i] = 0 add nothing and are skipped).
EDGE_INLINE void gram_rows_body(const float *a, const float *b, int64_t tokens, int64_t width, int64_t i0, int64_t i1, float *g) {
    const int triangle = b == NULL;
    if (triangle) b = a;
    for (int64_t i = i0; i < i1; i++) {
        float *row = g + i * width;
        for (int64_t t = 0; t < tokens; t++) {
            const float *bt = b + t * width, ai = a[t * width + i];
            if (ai == 0) continue;
            const v8f s = { ai, ai, ai, ai, ai, ai, ai, ai };
            int64_t j = triangle ? i : 0;
            for (; j + 8 <= width; j += 8) {
                v8f vx, vr;
                memcpy(&vx, bt + j, sizeof vx);
                memcpy(&vr, row + j, sizeof vr);
                vr += s * vx;
                memcpy(row + j, &vr, sizeof vr);
            }
            for (; j < width; j++) row[j] += ai * bt[j];
        }
    }
}

/// One vector width's compilation of the bodies (`EDGE_DECLARE_WIDTH`'s GPTQ entries).
#define EDGE_WIDTH(PREFIX, ATTRIBUTES)                                                                           \
    ATTRIBUTES double PREFIX##_dot_f64(const double *a, const double *b, int64_t n) { return dot_body(a, b, n); } \
    ATTRIBUTES void PREFIX##_dots_f64(const double *a, const double *b, int64_t n, int64_t segment, double *out) { \
        dots_body(a, b, n, segment, out);                                                                       \
    }                                                                                                           \
    ATTRIBUTES void PREFIX##_sub_scaled_f64(double *y, const double *x, double a, int64_t n) {                    \
        sub_scaled_body(y, x, a, n);                                                                            \
    }                                                                                                           \
    ATTRIBUTES void PREFIX##_gram_rows_f32(const float *a, const float *b, int64_t tokens, int64_t width, int64_t i0, \
                                           int64_t i1, float *g) {                                              \
        gram_rows_body(a, b, tokens, width, i0, i1, g);                                                         \
    }
EDGE_WIDTH(edge_generic, )
#if defined(__x86_64__)
EDGE_WIDTH(edge_avx2, __attribute__((target("avx2"))))
EDGE_WIDTH(edge_avx512, __attribute__((target("avx512f"))))
#endif
