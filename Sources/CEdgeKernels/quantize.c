// Weight quantizers for conversion: the q8 and q4 group fits of EdgeLM's quantizer
// (Sources/EdgeLM/Quantization/Quantizer.swift documents the method). The q4 error sums have a plain scalar
// reference and vector versions (4-lane clang vectors: SSE on x86-64, NEON on arm64; AVX or AVX-512 where
// the CPU has it) that give identical bytes: the vectors hold candidate scales, not weights, so every lane sums its
// weights in order exactly as the reference does, and no multiply-add is fused. The tests compare them on
// random and edge inputs.
#include "internal.h"
#include "exact.h"

// 4-lane vectors (one SSE or NEON register), in the vector extension GCC and clang share.
typedef float v4f __attribute__((vector_size(16)));
typedef int32_t v4i __attribute__((vector_size(16)));
typedef uint32_t v4u __attribute__((vector_size(16)));

static inline v4f splat(float f) { return (v4f){ f, f, f, f }; }

/// Lane-wise a < b ? a : b (min) or a > b ? a : b (max), through the comparison masks.
static inline v4f vmin(v4f a, v4f b) {
    const v4i m = a < b;
    return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}

static inline v4f vmax(v4f a, v4f b) {
    const v4i m = a > b;
    return (v4f)(((v4i)a & m) | ((v4i)b & ~m));
}

/// The f16 value nearest to f, as a float.
static float round_half_scalar(float f) { return edge_half_to_float(edge_float_to_half(f)); }

static inline float round_code(float v, float lo, float hi, int truncate) {
    v = v < lo ? lo : v;
    v = v > hi ? hi : v;
    if (truncate) return (float)(int32_t)v;
    const float magic = 12582912.0f;
    return (v + magic) - magic;
}

static inline v4f round_codes(v4f v, float lo, float hi, int truncate) {
    v = vmin(vmax(v, splat(lo)), splat(hi));
    if (truncate) return __builtin_convertvector(__builtin_convertvector(v, v4i), v4f);
    const v4f magic = splat(12582912.0f);
    return (v + magic) - magic;
}

/// The q4 candidate scales of a group: its largest-magnitude weight mapped to -(6.5 + k · 2/15) for k in 0..<16,
/// so from -6.5 to -8.5 in 16 steps (one AVX-512 vector); each is refitted once.
#define Q4_CANDIDATES 16
#define Q4_STEP (2.0f / 15.0f)

/// The importance-weighted sums Σ w·x·q and Σ w·q·q of n weights' codes q at each of 16 candidate scales
/// (the weighted squared error is then Σ w·x² - 2s Σ w·x·q + s² Σ w·q²): the plain reference, one candidate
/// after the other, each sum over the weights in order.
static void q4_sums_ref(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq) {
    for (int k = 0; k < Q4_CANDIDATES; k++) {
        const float inverse = 1 / scales[k];
        float sxq = 0, sqq = 0;
        for (int64_t i = 0; i < n; i++) {
            const float q = round_code(x[i] * inverse, -8, 7, truncate);
            const float wi = w ? w[i] : 1.0f;
            sxq += (wi * x[i]) * q;
            sqq += (wi * q) * q;
        }
        xq[k] = sxq, qq[k] = sqq;
    }
}

/// The same with the candidates in vector lanes (four 4-lane vectors): every lane still sums its weights in
/// order, so the results are the reference's bit for bit.
static void q4_sums_vec(const float *x, const float *w, int64_t n, const float *scales, int truncate, float *xq, float *qq) {
    v4f inverse[4], sxq[4], sqq[4];
    for (int v = 0; v < 4; v++) {
        v4f scale;
        memcpy(&scale, scales + 4 * v, sizeof scale);
        inverse[v] = splat(1) / scale;
        sxq[v] = splat(0), sqq[v] = splat(0);
    }
    for (int64_t i = 0; i < n; i++) {
        const float wi = w ? w[i] : 1.0f;
        const v4f xi = splat(x[i]), wx = splat(wi * x[i]), wv = splat(wi);
        for (int v = 0; v < 4; v++) {
            const v4f q = round_codes(xi * inverse[v], -8, 7, truncate);
            sxq[v] += wx * q;
            sqq[v] += (wv * q) * q;
        }
    }
    for (int v = 0; v < 4; v++) {
        memcpy(xq + 4 * v, &sxq[v], sizeof sxq[v]);
        memcpy(qq + 4 * v, &sqq[v], sizeof sqq[v]);
    }
}


typedef void (*q4_sums_fn)(const float *, const float *, int64_t, const float *, int, float *, float *);

/// Lane-wise round_half_scalar: the f16 rounding done on the bits for normal halves, lane by lane otherwise.
static inline v4f round_half4(v4f v) {
    v4u bits;
    memcpy(&bits, &v, sizeof bits);
    const v4u magnitude = bits & 0x7FFFFFFFu, sign = bits & 0x80000000u;
    // |v| in [2^-14, 65520): keep 10 mantissa bits, ties to even (a carry moves into the exponent).
    const v4u normal = ((magnitude + 0x0FFFu + ((magnitude >> 13) & 1u)) & 0xFFFFE000u) | sign;
    v4f result;
    memcpy(&result, &normal, sizeof result);
    for (int l = 0; l < 4; l++) {
        if (magnitude[l] < 0x38800000u || magnitude[l] >= 0x477FF000u) result[l] = round_half_scalar(v[l]);
    }
    return result;
}

static void round_half16(float *v) {
    for (int k = 0; k < Q4_CANDIDATES; k += 4) {
        v4f r;
        memcpy(&r, v + k, sizeof r);
        r = round_half4(r);
        memcpy(v + k, &r, sizeof r);
    }
}

static inline int usable(float scale) { return scale != 0 && __builtin_isfinite(scale); }

/// The first of the largest-magnitude weights (n a multiple of 8).
static float peak_weight(const float *x, int64_t n) {
    v4f high = splat(0), low = splat(0);
    for (int64_t i = 0; i < n; i += 4) {
        v4f v;
        memcpy(&v, x + i, sizeof v);
        high = vmax(high, v);
        low = vmin(low, v);
    }
    float top = 0, bottom = 0;
    for (int l = 0; l < 4; l++) top = high[l] > top ? high[l] : top, bottom = low[l] < bottom ? low[l] : bottom;
    if (top != -bottom) return top > -bottom ? top : bottom;
    int64_t i = 0;
    while (i < n && x[i] != top && x[i] != bottom) i++;
    return i < n ? x[i] : 0;
}

/// Σ w·x² (w NULL: Σ x²) in double, in four partial sums (weights i, i + 4, ...), not one serial chain of
/// dependent adds.
EDGE_INLINE double weighted_energy(const float *x, const float *w, int64_t n) {
    double part[4] = { 0, 0, 0, 0 };
    for (int64_t i = 0; i < n; i += 4)
        for (int l = 0; l < 4; l++) part[l] += (double)((w ? w[i + l] : 1.0f) * x[i + l]) * x[i + l];
    return (part[0] + part[1]) + (part[2] + part[3]);
}

static uint16_t fit_q4(const float *x, const float *w, int64_t n, int8_t *codes, int truncate, q4_sums_fn sums) {
    const float peak = peak_weight(x, n);
    if (peak == 0) {
        memset(codes, 0, (size_t)n);
        return 0;
    }
    // x·x - 2s x·q + s² q·q in double: the cancellation must not hide an exact fit.
    const double xx = weighted_energy(x, w, n);
    enum { K = Q4_CANDIDATES };
    float base[K], refit[K], e2[K], xq[K], qq[K], refitError[K];
    for (int k = 0; k < K; k++) base[k] = -peak / (6.5f + (float)k * Q4_STEP);
    round_half16(base);
    sums(x, w, n, base, truncate, xq, qq);
    for (int k = 0; k < K; k++) {
        e2[k] = (float)(xx - 2.0 * base[k] * xq[k] + (double)base[k] * base[k] * qq[k]);
        refit[k] = usable(base[k]) && qq[k] > 0 ? xq[k] / qq[k] : 0;
    }
    round_half16(refit);
    sums(x, w, n, refit, truncate, xq, qq);
    for (int k = 0; k < K; k++) refitError[k] = (float)(xx - 2.0 * refit[k] * xq[k] + (double)refit[k] * refit[k] * qq[k]);
    // The first least error in the order base 0, refit 0, base 1, refit 1, ...: the minimum over all, then
    // the first candidate that has it (unusable scales count as infinitely bad).
    float eb[K], er[K], least = __builtin_inff();
    for (int k = 0; k < K; k++) {
        eb[k] = usable(base[k]) ? e2[k] : __builtin_inff();
        er[k] = usable(refit[k]) ? refitError[k] : __builtin_inff();
        least = eb[k] < least ? eb[k] : least;
        least = er[k] < least ? er[k] : least;
    }
    if (least == __builtin_inff()) {
        // Weights too small for any f16 scale: all codes 0.
        memset(codes, 0, (size_t)n);
        return 0;
    }
    float best = 0;
    for (int k = 0; k < K; k++) {
        if (eb[k] == least) { best = base[k]; break; }
        if (er[k] == least) { best = refit[k]; break; }
    }
    const float inverse = 1 / best;
    for (int64_t i = 0; i < n; i += 4) {
        v4f v;
        memcpy(&v, x + i, sizeof v);
        const v4i q = __builtin_convertvector(round_codes(v * splat(inverse), -8, 7, truncate), v4i);
        for (int l = 0; l < 4; l++) codes[i + l] = (int8_t)q[l];
    }
    return edge_float_to_half(best);
}

// The fit of the vector levels: fit_q4 with the work around the sums in 8-lane vectors (the error
// arithmetic, refits, f16 rounding, the choice and the codes), every lane computing what fit_q4 computes for
// its candidate in the same order, so scale and codes are fit_q4's bit for bit. Always inlined into a
// wrapper per level, so the vectors become that level's registers. Vectors are passed only by pointer or in
// macros and returned only from always-inlined helpers (exact.h).

EDGE_INLINE v8f load8(const float *p) {
    v8f v;
    memcpy(&v, p, sizeof v);
    return v;
}

EDGE_INLINE v8f splat8(float f) { return (v8f){ f, f, f, f, f, f, f, f }; }

/// Lane-wise mask ? a : b.
#define SELECT8(mask, a, b) ((v8f)(((v8i)(a) & (mask)) | ((v8i)(b) & ~(mask))))

/// Lane bits of a comparison mask (bit l set when lane l is).
#define BITS8(mask) ({                                                       \
    const v8i m_ = (mask);                                                   \
    uint32_t bits_ = 0;                                                      \
    for (int l_ = 0; l_ < 8; l_++) bits_ |= (uint32_t)(m_[l_] & 1) << l_;  \
    bits_;                                                                   \
})

/// round_half16 for eight values in place; lanes outside the normal half range (rare) take the scalar rounding.
EDGE_INLINE void round_half8(float *v) {
    v8u bits;
    memcpy(&bits, v, sizeof bits);
    const v8u magnitude = bits & 0x7FFFFFFFu, sign = bits & 0x80000000u;
    const v8u normal = ((magnitude + 0x0FFFu + ((magnitude >> 13) & 1u)) & 0xFFFFE000u) | sign;
    const uint32_t odd = BITS8((v8i)((magnitude < 0x38800000u) | (magnitude >= 0x477FF000u)));
    float scalar[8];
    for (int l = 0; l < 8; l++) scalar[l] = odd >> l & 1 ? round_half_scalar(v[l]) : 0;
    memcpy(v, &normal, sizeof normal);
    for (int l = 0; l < 8; l++)
        if (odd >> l & 1) v[l] = scalar[l];
}

/// fit_q4's x·x - 2s x·q + s² q·q for eight candidates, in double, rounded to float.
EDGE_INLINE v8f error8(double xx, const float *scale, const float *xq, const float *qq) {
    const v8d s = __builtin_convertvector(load8(scale), v8d);
    const v8d e = (xx - (2.0 * s) * __builtin_convertvector(load8(xq), v8d)) + (s * s) * __builtin_convertvector(load8(qq), v8d);
    return __builtin_convertvector(e, v8f);
}

/// usable() lane-wise: nonzero and finite.
EDGE_INLINE v8i usable8(const float *s) {
    v8u bits;
    memcpy(&bits, s, sizeof bits);
    return (v8i)(((bits & 0x7FFFFFFFu) != 0) & ((bits & 0x7F800000u) != 0x7F800000u));
}

EDGE_INLINE uint16_t fit_q4_lanes(const float *x, const float *w, int64_t n, int8_t *codes, int truncate, q4_sums_fn sums) {
    const float peak = peak_weight(x, n);
    if (peak == 0) {
        memset(codes, 0, (size_t)n);
        return 0;
    }
    const double xx = weighted_energy(x, w, n);
    enum { K = Q4_CANDIDATES, V = Q4_CANDIDATES / 8 };
    float base[K], refit[K], xq[K], qq[K];
    v8f eb[V], er[V];
    const v8f lane = { 0, 1, 2, 3, 4, 5, 6, 7 };
    for (int v = 0; v < V; v++) {
        const v8f b = -peak / (splat8(6.5f) + (lane + splat8(8.0f * v)) * splat8(Q4_STEP));
        memcpy(base + 8 * v, &b, sizeof b);
        round_half8(base + 8 * v);
    }
    sums(x, w, n, base, truncate, xq, qq);
    for (int v = 0; v < V; v++) {
        const v8f bq = load8(qq + 8 * v);
        const v8i ok = usable8(base + 8 * v);
        eb[v] = SELECT8(ok, error8(xx, base + 8 * v, xq + 8 * v, qq + 8 * v), splat8(__builtin_inff()));
        const v8f r = SELECT8(ok & (bq > 0), load8(xq + 8 * v) / bq, splat8(0));
        memcpy(refit + 8 * v, &r, sizeof r);
        round_half8(refit + 8 * v);
    }
    sums(x, w, n, refit, truncate, xq, qq);
    v8f low = splat8(__builtin_inff());
    for (int v = 0; v < V; v++) {
        er[v] = SELECT8(usable8(refit + 8 * v), error8(xx, refit + 8 * v, xq + 8 * v, qq + 8 * v), splat8(__builtin_inff()));
        low = SELECT8(eb[v] < low, eb[v], low);
        low = SELECT8(er[v] < low, er[v], low);
    }
    float least = __builtin_inff();
    for (int l = 0; l < 8; l++) least = low[l] < least ? low[l] : least;
    if (least == __builtin_inff()) {
        memset(codes, 0, (size_t)n);
        return 0;
    }
    // The first candidate with the least error, a base before its refit.
    uint32_t fromBase = 0, fromRefit = 0;
    for (int v = 0; v < V; v++) {
        fromBase |= BITS8(eb[v] == splat8(least)) << (8 * v);
        fromRefit |= BITS8(er[v] == splat8(least)) << (8 * v);
    }
    const int k = __builtin_ctz(fromBase | fromRefit);
    const float best = fromBase >> k & 1 ? base[k] : refit[k];
    const v8f inverse = splat8(1 / best);
    for (int64_t i = 0; i < n; i += 8) {
        v8f v = load8(x + i) * inverse;
        v = SELECT8(v > splat8(-8), v, splat8(-8));
        v = SELECT8(v < splat8(7), v, splat8(7));
        const v8i q = truncate ? __builtin_convertvector(v, v8i) : __builtin_convertvector((v + splat8(12582912.0f)) - splat8(12582912.0f), v8i);
        for (int l = 0; l < 8; l++) codes[i + l] = (int8_t)q[l];
    }
    return edge_float_to_half(best);
}

uint16_t edge_fit_q8(const float *x, int64_t n, int8_t *codes, int truncate) {
    float amax = 0;
    for (int64_t i = 0; i < n; i++) amax = __builtin_fabsf(x[i]) > amax ? __builtin_fabsf(x[i]) : amax;
    const uint16_t half = edge_float_to_half(amax / 127);
    const float scale = edge_half_to_float(half), inverse = scale > 0 ? 1 / scale : 0;
    for (int64_t i = 0; i < n; i++) codes[i] = (int8_t)round_code(x[i] * inverse, -127, 127, truncate);
    return half;
}

uint16_t edge_fit_q4_reference(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return fit_q4(x, w, n, codes, truncate, q4_sums_ref);
}

uint16_t edge_generic_fit_q4(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return fit_q4_lanes(x, w, n, codes, truncate, q4_sums_vec);
}

#if defined(__x86_64__)
__attribute__((target("avx512f")))
uint16_t edge_avx512_fit_q4(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return fit_q4_lanes(x, w, n, codes, truncate, edge_avx512_q4_sums);
}

__attribute__((target("avx2")))
uint16_t edge_avx2_fit_q4(const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return fit_q4_lanes(x, w, n, codes, truncate, edge_avx2_q4_sums);
}
#endif
