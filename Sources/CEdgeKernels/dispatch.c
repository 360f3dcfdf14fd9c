// CPU detection, level names, and the public entry points: each calls its level's kernel.
#include "internal.h"

#if defined(__x86_64__)
#include <cpuid.h>

static uint64_t edge_xgetbv(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

/// Bit i set when this CPU can run level i.
static unsigned edge_supported_mask(void) {
    unsigned mask = 1u << EDGE_ISA_GENERIC, a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return mask;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave) return mask;
    uint64_t xcr0 = edge_xgetbv();
    int ymm_state = (xcr0 & 0x6) == 0x6, zmm_state = (xcr0 & 0xE6) == 0xE6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return mask;
    int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int avx512vnni = (c >> 11) & 1;
    unsigned a1 = 0, b1 = 0, c1 = 0, d1 = 0;
    int avxvnni = __get_cpuid_count(7, 1, &a1, &b1, &c1, &d1) && ((a1 >> 4) & 1);
    if (!(ymm_state && avx2 && fma && f16c)) return mask;
    mask |= 1u << EDGE_ISA_AVX2;
    if (avxvnni) mask |= 1u << EDGE_ISA_AVX_VNNI;
    if (zmm_state && avx512f && avx512bw && avx512vl && avx512vnni) mask |= 1u << EDGE_ISA_AVX512_VNNI;
    return mask;
}

static const int edge_preference[] = { EDGE_ISA_AVX512_VNNI, EDGE_ISA_AVX_VNNI, EDGE_ISA_AVX2 };

#elif defined(__aarch64__)
#if defined(__APPLE__)
#include <sys/sysctl.h>

static int edge_sysctl_flag(const char *name) {
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname(name, &value, &size, NULL, 0) == 0 && value != 0;
}

static unsigned edge_supported_mask(void) {
    unsigned mask = (1u << EDGE_ISA_GENERIC) | (1u << EDGE_ISA_NEON);
    int dotprod = edge_sysctl_flag("hw.optional.arm.FEAT_DotProd");
    if (dotprod) mask |= 1u << EDGE_ISA_DOTPROD;
    if (dotprod && edge_sysctl_flag("hw.optional.arm.FEAT_I8MM")) mask |= 1u << EDGE_ISA_I8MM;
    return mask;
}
#else
#include <sys/auxv.h>

static unsigned edge_supported_mask(void) {
    unsigned mask = (1u << EDGE_ISA_GENERIC) | (1u << EDGE_ISA_NEON);
    unsigned long hwcap = getauxval(AT_HWCAP), hwcap2 = getauxval(AT_HWCAP2);
    int dotprod = (hwcap >> 20) & 1;  // HWCAP_ASIMDDP
    int i8mm = (hwcap2 >> 13) & 1;    // HWCAP2_I8MM
    if (dotprod) mask |= 1u << EDGE_ISA_DOTPROD;
    if (dotprod && i8mm) mask |= 1u << EDGE_ISA_I8MM;
    return mask;
}
#endif

static const int edge_preference[] = { EDGE_ISA_I8MM, EDGE_ISA_DOTPROD, EDGE_ISA_NEON };

#else
static unsigned edge_supported_mask(void) { return 1u << EDGE_ISA_GENERIC; }
static const int edge_preference[] = { EDGE_ISA_GENERIC };
#endif

int edge_isa_supported(int isa) {
    return isa >= 0 && isa < EDGE_ISA_COUNT && ((edge_supported_mask() >> isa) & 1);
}

int edge_detect_isa(void) {
    unsigned mask = edge_supported_mask();
    for (size_t i = 0; i < sizeof edge_preference / sizeof edge_preference[0]; i++)
        if ((mask >> edge_preference[i]) & 1) return edge_preference[i];
    return EDGE_ISA_GENERIC;
}

static const char *const edge_names[EDGE_ISA_COUNT] = {
    [EDGE_ISA_GENERIC] = "generic", [EDGE_ISA_AVX2] = "avx2", [EDGE_ISA_AVX_VNNI] = "avx-vnni",
    [EDGE_ISA_AVX512_VNNI] = "avx512", [EDGE_ISA_NEON] = "neon", [EDGE_ISA_DOTPROD] = "dotprod",
    [EDGE_ISA_I8MM] = "i8mm",
};

const char *edge_isa_name(int isa) { return isa >= 0 && isa < EDGE_ISA_COUNT ? edge_names[isa] : NULL; }

int edge_isa_from_name(const char *name) {
    for (int i = 0; i < EDGE_ISA_COUNT; i++)
        if (name && strcmp(name, edge_names[i]) == 0) return i;
    return -1;
}

void edge_cpu_relax(void) {
#if defined(__x86_64__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

void edge_quantize_q8_blocks(int isa, const float *x, int64_t nblocks, int8_t *codes, float *scales) {
#if defined(__x86_64__)
    if (isa == EDGE_ISA_AVX2 || isa == EDGE_ISA_AVX_VNNI || isa == EDGE_ISA_AVX512_VNNI) {
        edge_avx2_quantize(x, nblocks, codes, scales);
        return;
    }
#elif defined(__aarch64__)
    if (isa == EDGE_ISA_NEON || isa == EDGE_ISA_DOTPROD || isa == EDGE_ISA_I8MM) {
        edge_neon_quantize(x, nblocks, codes, scales);
        return;
    }
#endif
    edge_generic_quantize(x, nblocks, codes, scales);
}

// The level's kernel; a level this build has no kernel for (another architecture's) runs generic C.
#if defined(__x86_64__)
#define EDGE_DISPATCH(KIND, ...)                                                                          \
    switch (isa) {                                                                                    \
    case EDGE_ISA_AVX512_VNNI: edge_avx512_##KIND(__VA_ARGS__); return;                               \
    case EDGE_ISA_AVX_VNNI: edge_avxvnni_##KIND(__VA_ARGS__); return;                                 \
    case EDGE_ISA_AVX2: edge_avx2_##KIND(__VA_ARGS__); return;                                        \
    default: edge_generic_##KIND(__VA_ARGS__); return;                                                \
    }
#elif defined(__aarch64__)
#define EDGE_DISPATCH(KIND, ...)                                                                          \
    switch (isa) {                                                                                    \
    case EDGE_ISA_I8MM: edge_i8mm_##KIND(__VA_ARGS__); return;                                        \
    case EDGE_ISA_DOTPROD: edge_dotprod_##KIND(__VA_ARGS__); return;                                  \
    case EDGE_ISA_NEON: edge_neon_##KIND(__VA_ARGS__); return;                                        \
    default: edge_generic_##KIND(__VA_ARGS__); return;                                                \
    }
#else
#define EDGE_DISPATCH(KIND, ...) (void)isa; edge_generic_##KIND(__VA_ARGS__);
#endif

/// The attention kernels' family: AVX2 for every x86 SIMD level, NEON for every arm64 level. A call of
/// kernel NAME is one expression (of the kernel's type, void or not): `EDGE_ATTENTION(NAME, args)`.
#if defined(__x86_64__)
#define EDGE_SIMD_FAMILY(isa) ((isa) == EDGE_ISA_AVX2 || (isa) == EDGE_ISA_AVX_VNNI || (isa) == EDGE_ISA_AVX512_VNNI)
#define EDGE_SIMD_KERNEL(NAME) edge_avx2_##NAME
#elif defined(__aarch64__)
#define EDGE_SIMD_FAMILY(isa) ((isa) == EDGE_ISA_NEON || (isa) == EDGE_ISA_DOTPROD || (isa) == EDGE_ISA_I8MM)
#define EDGE_SIMD_KERNEL(NAME) edge_neon_##NAME
#else
#define EDGE_SIMD_FAMILY(isa) ((void)(isa), 0)
#define EDGE_SIMD_KERNEL(NAME) edge_generic_##NAME
#endif
#define EDGE_ATTENTION(NAME, ...) (EDGE_SIMD_FAMILY(isa) ? EDGE_SIMD_KERNEL(NAME)(__VA_ARGS__) : edge_generic_##NAME(__VA_ARGS__))

void edge_attn_values_q8(int isa, const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales,
                         int64_t npos, int64_t hd, float *out, int64_t ostride) {
    EDGE_ATTENTION(attn_values_q8, p, pstride, nq, v, vscales, npos, hd, out, ostride);
}

void edge_attn_scores_f16(int isa, const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out) {
    EDGE_ATTENTION(attn_scores_f16, q, k, npos, hd, out);
}

void edge_attn_values_f16(int isa, const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out) {
    EDGE_ATTENTION(attn_values_f16, p, v, npos, hd, out);
}

void edge_swiglu(int isa, float *gate, const float *up, int64_t n) {
    EDGE_ATTENTION(swiglu, gate, up, n);
}

float edge_scale_max(int isa, float *row, int64_t n, float scale) {
    return EDGE_ATTENTION(scale_max, row, n, scale);
}

float edge_exp_sum(int isa, float *row, int64_t n, float max) {
    return EDGE_ATTENTION(exp_sum, row, n, max);
}

void edge_matmul_q8(int isa, const int8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                    int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                    float *out, int64_t ors, int64_t ots) {
    EDGE_DISPATCH(matmul_q8, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots)
}

void edge_matmul_q4(int isa, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                    int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                    float *out, int64_t ors, int64_t ots) {
    EDGE_DISPATCH(matmul_q4, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots)
}

/// The level's token-wise kernel, or one `edge_matmul_` call per token where the level has none.
#if defined(__x86_64__)
#define EDGE_TOKENWISE(KIND)                                                                      \
    switch (isa) {                                                                                      \
    case EDGE_ISA_AVX512_VNNI: edge_avx512_tokenwise_##KIND(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots); return; \
    case EDGE_ISA_AVX_VNNI: edge_avxvnni_tokenwise_##KIND(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots); return; \
    case EDGE_ISA_AVX2: edge_avx2_tokenwise_##KIND(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots); return; \
    default:                                                                                            \
        for (int64_t t = 0; t < ntok; t++)                                                              \
            edge_matmul_##KIND(isa, w, ws, nblocks, gblocks, r0, r1, x + t * nblocks * 32, xs + t * nblocks, 1, out + t * ots, ors, ots); \
    }
#else
#define EDGE_TOKENWISE(KIND)                                                                      \
    for (int64_t t = 0; t < ntok; t++)                                                                  \
        edge_matmul_##KIND(isa, w, ws, nblocks, gblocks, r0, r1, x + t * nblocks * 32, xs + t * nblocks, 1, out + t * ots, ors, ots);
#endif

void edge_matmul_q8_tokenwise(int isa, const int8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                              int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                              float *out, int64_t ors, int64_t ots) {
    EDGE_TOKENWISE(q8)
}

void edge_matmul_q4_tokenwise(int isa, const uint8_t *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                              int64_t r0, int64_t r1, const int8_t *x, const float *xs, int64_t ntok,
                              float *out, int64_t ors, int64_t ots) {
    EDGE_TOKENWISE(q4)
}
