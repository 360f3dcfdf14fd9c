// CPU detection, level names, each level's kernel table, and the public entry points: each calls its level's
// kernel. This is the only file that looks at levels: every other file receives a table.
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

static const char *const edge_titles[EDGE_ISA_COUNT] = {
    [EDGE_ISA_GENERIC] = "generic C", [EDGE_ISA_AVX2] = "AVX2", [EDGE_ISA_AVX_VNNI] = "AVX-VNNI",
    [EDGE_ISA_AVX512_VNNI] = "AVX-512 VNNI", [EDGE_ISA_NEON] = "NEON", [EDGE_ISA_DOTPROD] = "NEON dotprod",
    [EDGE_ISA_I8MM] = "NEON i8mm",
};

const char *edge_isa_name(int isa) { return isa >= 0 && isa < EDGE_ISA_COUNT ? edge_names[isa] : NULL; }

const char *edge_isa_title(int isa) { return isa >= 0 && isa < EDGE_ISA_COUNT ? edge_titles[isa] : NULL; }

int edge_isa_from_name(const char *name) {
    for (int i = 0; i < EDGE_ISA_COUNT; i++)
        if (name && strcmp(name, edge_names[i]) == 0) return i;
    return -1;
}

/// Entry indices, in `EDGE_KERNEL_ENTRIES` order.
enum {
#define EDGE_KERNEL_INDEX(NAME, RESULT, PARAMETERS, REQUIRED) EDGE_KERNEL_##NAME,
    EDGE_KERNEL_ENTRIES(EDGE_KERNEL_INDEX)
#undef EDGE_KERNEL_INDEX
    EDGE_KERNEL_COUNT
};

/// Token-wise kernels for a level without multi-token tiles: one call of its row-major kernel per token.
#define EDGE_PER_TOKEN(PREFIX)                                                                                  \
    static void PREFIX##_per_token_q8(EDGE_MATMUL_ARGS(int8_t)) {                                               \
        for (int64_t t = 0; t < ntok; t++)                                                                      \
            PREFIX##_matmul_q8(w, ws, nblocks, gblocks, r0, r1, x + t * nblocks * 32, xs + t * nblocks, 1, out + t * ots, ors, ots); \
    }                                                                                                           \
    static void PREFIX##_per_token_q4(EDGE_MATMUL_ARGS(uint8_t)) {                                              \
        for (int64_t t = 0; t < ntok; t++)                                                                      \
            PREFIX##_matmul_q4(w, ws, nblocks, gblocks, r0, r1, x + t * nblocks * 32, xs + t * nblocks, 1, out + t * ots, ors, ots); \
    }
EDGE_PER_TOKEN(edge_generic)
#if defined(__aarch64__)
EDGE_PER_TOKEN(edge_neon)
EDGE_PER_TOKEN(edge_dotprod)
EDGE_PER_TOKEN(edge_i8mm)
#endif

static edge_kernels edge_tables[EDGE_ISA_COUNT];
/// edge_sources[isa][entry]: the level whose code fills the entry (-1: unset).
static signed char edge_sources[EDGE_ISA_COUNT][EDGE_KERNEL_COUNT];

/// Level `isa`'s entry NAME is the level's own kernel `FUNCTION`.
#define EDGE_OWN(isa, NAME, FUNCTION) (edge_tables[isa].NAME = (FUNCTION), edge_sources[isa][EDGE_KERNEL_##NAME] = (signed char)(isa))

/// Level `isa` starts from level `lower`'s table: every entry it does not set itself is that level's kernel.
static void edge_fall_back(int isa, int lower) {
    edge_tables[isa] = edge_tables[lower];
    memcpy(edge_sources[isa], edge_sources[lower], sizeof edge_sources[isa]);
}

/// The generic level: portable C for every required entry.
static void edge_fill_generic(void) {
    const int g = EDGE_ISA_GENERIC;
    EDGE_OWN(g, quantize, edge_generic_quantize);
    EDGE_OWN(g, matmul_q8, edge_generic_matmul_q8);
    EDGE_OWN(g, matmul_q4, edge_generic_matmul_q4);
    EDGE_OWN(g, tokenwise_q8, edge_generic_per_token_q8);
    EDGE_OWN(g, tokenwise_q4, edge_generic_per_token_q4);
    EDGE_OWN(g, offsets, edge_generic_offsets);
    EDGE_OWN(g, packed, edge_generic_packed);
    EDGE_OWN(g, decode_levels, edge_generic_decode_levels);
    EDGE_OWN(g, f16_to_f32, edge_generic_f16_to_f32);
    EDGE_OWN(g, attn_values_q8, edge_generic_attn_values_q8);
    EDGE_OWN(g, attn_scores_f16, edge_generic_attn_scores_f16);
    EDGE_OWN(g, attn_values_f16, edge_generic_attn_values_f16);
    EDGE_OWN(g, scale_max, edge_generic_scale_max);
    EDGE_OWN(g, exp_sum, edge_generic_exp_sum);
    EDGE_OWN(g, swiglu, edge_generic_swiglu);
    EDGE_OWN(g, geglu, edge_generic_geglu);
    EDGE_OWN(g, fit_q4, edge_generic_fit_q4);
    EDGE_OWN(g, fit_q4a, edge_generic_fit_q4a);
    EDGE_OWN(g, dot_f64, edge_generic_dot_f64);
    EDGE_OWN(g, dots_f64, edge_generic_dots_f64);
    EDGE_OWN(g, sub_scaled_f64, edge_generic_sub_scaled_f64);
    EDGE_OWN(g, gram_rows_f32, edge_generic_gram_rows_f32);
}

#if defined(__x86_64__)
/// The x86 levels: AVX2 has every entry; AVX-VNNI and AVX-512 replace the matrix kernels (AVX-512 also the
/// fits, GPTQ arithmetic and offset products compiled for 512-bit registers, the register-built q5o/q6 and fused q4o).
static void edge_fill_levels(void) {
    const int avx2 = EDGE_ISA_AVX2, vnni = EDGE_ISA_AVX_VNNI, avx512 = EDGE_ISA_AVX512_VNNI;
    edge_fall_back(avx2, EDGE_ISA_GENERIC);
    EDGE_OWN(avx2, quantize, edge_avx2_quantize);
    EDGE_OWN(avx2, matmul_q8, edge_avx2_matmul_q8);
    EDGE_OWN(avx2, matmul_q4, edge_avx2_matmul_q4);
    EDGE_OWN(avx2, tokenwise_q8, edge_avx2_tokenwise_q8);
    EDGE_OWN(avx2, tokenwise_q4, edge_avx2_tokenwise_q4);
    EDGE_OWN(avx2, offsets, edge_avx2_offsets);
    EDGE_OWN(avx2, packed, edge_avx2_packed);
    EDGE_OWN(avx2, fused_q4o, edge_avx2_fused_q4o);
    EDGE_OWN(avx2, decode_levels, edge_avx2_decode_levels);
    EDGE_OWN(avx2, f16_to_f32, edge_avx2_f16_to_f32);
    EDGE_OWN(avx2, attn_values_q8, edge_avx2_attn_values_q8);
    EDGE_OWN(avx2, attn_scores_f16, edge_avx2_attn_scores_f16);
    EDGE_OWN(avx2, attn_values_f16, edge_avx2_attn_values_f16);
    EDGE_OWN(avx2, scale_max, edge_avx2_scale_max);
    EDGE_OWN(avx2, exp_sum, edge_avx2_exp_sum);
    EDGE_OWN(avx2, swiglu, edge_avx2_swiglu);
    EDGE_OWN(avx2, geglu, edge_avx2_geglu);
    EDGE_OWN(avx2, fit_q4, edge_avx2_fit_q4);
    EDGE_OWN(avx2, fit_q4a, edge_avx2_fit_q4a);
    EDGE_OWN(avx2, dot_f64, edge_avx2_dot_f64);
    EDGE_OWN(avx2, dots_f64, edge_avx2_dots_f64);
    EDGE_OWN(avx2, sub_scaled_f64, edge_avx2_sub_scaled_f64);
    EDGE_OWN(avx2, gram_rows_f32, edge_avx2_gram_rows_f32);

    edge_fall_back(vnni, avx2);
    EDGE_OWN(vnni, matmul_q8, edge_avxvnni_matmul_q8);
    EDGE_OWN(vnni, matmul_q4, edge_avxvnni_matmul_q4);
    EDGE_OWN(vnni, tokenwise_q8, edge_avxvnni_tokenwise_q8);
    EDGE_OWN(vnni, tokenwise_q4, edge_avxvnni_tokenwise_q4);
    EDGE_OWN(vnni, fused_q4o, edge_avxvnni_fused_q4o);
    EDGE_OWN(vnni, packed, edge_avxvnni_packed);

    edge_fall_back(avx512, avx2);  // not AVX-VNNI: an AVX-512 part may lack it
    EDGE_OWN(avx512, matmul_q8, edge_avx512_matmul_q8);
    EDGE_OWN(avx512, matmul_q4, edge_avx512_matmul_q4);
    EDGE_OWN(avx512, tokenwise_q8, edge_avx512_tokenwise_q8);
    EDGE_OWN(avx512, tokenwise_q4, edge_avx512_tokenwise_q4);
    EDGE_OWN(avx512, planes_q5o, edge_avx512_planes_q5o);
    EDGE_OWN(avx512, planes_q6, edge_avx512_planes_q6);
    EDGE_OWN(avx512, fused_q4o, edge_avx512_fused_q4o);
    EDGE_OWN(avx512, offsets, edge_avx512_offsets);
    EDGE_OWN(avx512, packed, edge_avx512_packed);
    EDGE_OWN(avx512, fit_q4, edge_avx512_fit_q4);
    EDGE_OWN(avx512, fit_q4a, edge_avx512_fit_q4a);
    EDGE_OWN(avx512, dot_f64, edge_avx512_dot_f64);
    EDGE_OWN(avx512, dots_f64, edge_avx512_dots_f64);
    EDGE_OWN(avx512, sub_scaled_f64, edge_avx512_sub_scaled_f64);
    EDGE_OWN(avx512, gram_rows_f32, edge_avx512_gram_rows_f32);
}
#elif defined(__aarch64__)
/// The arm64 levels: NEON has the matrix, quantizer, attention and codebook kernels (the rest is the generic C,
/// which the compiler vectorises for NEON anyway); dotprod and i8mm replace the matrix kernels. None has
/// token-wise tiles: their token-wise kernels call the row-major one per token.
static void edge_fill_levels(void) {
    const int neon = EDGE_ISA_NEON, dotprod = EDGE_ISA_DOTPROD, i8mm = EDGE_ISA_I8MM;
    edge_fall_back(neon, EDGE_ISA_GENERIC);
    EDGE_OWN(neon, quantize, edge_neon_quantize);
    EDGE_OWN(neon, matmul_q8, edge_neon_matmul_q8);
    EDGE_OWN(neon, matmul_q4, edge_neon_matmul_q4);
    EDGE_OWN(neon, tokenwise_q8, edge_neon_per_token_q8);
    EDGE_OWN(neon, tokenwise_q4, edge_neon_per_token_q4);
    EDGE_OWN(neon, decode_levels, edge_neon_decode_levels);
    EDGE_OWN(neon, attn_values_q8, edge_neon_attn_values_q8);
    EDGE_OWN(neon, attn_scores_f16, edge_neon_attn_scores_f16);
    EDGE_OWN(neon, attn_values_f16, edge_neon_attn_values_f16);
    EDGE_OWN(neon, scale_max, edge_neon_scale_max);
    EDGE_OWN(neon, exp_sum, edge_neon_exp_sum);
    EDGE_OWN(neon, swiglu, edge_neon_swiglu);
    EDGE_OWN(neon, geglu, edge_neon_geglu);

    edge_fall_back(dotprod, neon);
    EDGE_OWN(dotprod, matmul_q8, edge_dotprod_matmul_q8);
    EDGE_OWN(dotprod, matmul_q4, edge_dotprod_matmul_q4);
    EDGE_OWN(dotprod, tokenwise_q8, edge_dotprod_per_token_q8);
    EDGE_OWN(dotprod, tokenwise_q4, edge_dotprod_per_token_q4);

    edge_fall_back(i8mm, dotprod);
    EDGE_OWN(i8mm, matmul_q8, edge_i8mm_matmul_q8);
    EDGE_OWN(i8mm, matmul_q4, edge_i8mm_matmul_q4);
    EDGE_OWN(i8mm, tokenwise_q8, edge_i8mm_per_token_q8);
    EDGE_OWN(i8mm, tokenwise_q4, edge_i8mm_per_token_q4);
}
#else
static void edge_fill_levels(void) {}
#endif

/// Fills every table before main runs: the generic one, this architecture's levels, and the generic C for the
/// levels of other architectures (which this build cannot run: `edge_isa_supported` refuses them).
__attribute__((constructor)) static void edge_fill_tables(void) {
    for (int isa = 0; isa < EDGE_ISA_COUNT; isa++) memset(edge_sources[isa], -1, sizeof edge_sources[isa]);
    edge_fill_generic();
    for (int isa = 1; isa < EDGE_ISA_COUNT; isa++) edge_fall_back(isa, EDGE_ISA_GENERIC);
    edge_fill_levels();
}

const edge_kernels *edge_kernels_at(int isa) {
    return &edge_tables[isa >= 0 && isa < EDGE_ISA_COUNT ? isa : EDGE_ISA_GENERIC];
}

static const char *const edge_kernel_names[] = {
#define EDGE_KERNEL_NAME(NAME, RESULT, PARAMETERS, REQUIRED) #NAME,
    EDGE_KERNEL_ENTRIES(EDGE_KERNEL_NAME)
#undef EDGE_KERNEL_NAME
};

static const int edge_kernel_requirements[] = {
#define EDGE_KERNEL_REQUIRED(NAME, RESULT, PARAMETERS, REQUIRED) REQUIRED,
    EDGE_KERNEL_ENTRIES(EDGE_KERNEL_REQUIRED)
#undef EDGE_KERNEL_REQUIRED
};

int edge_kernel_count(void) { return EDGE_KERNEL_COUNT; }

const char *edge_kernel_name(int entry) { return entry >= 0 && entry < EDGE_KERNEL_COUNT ? edge_kernel_names[entry] : NULL; }

int edge_kernel_required(int entry) { return entry >= 0 && entry < EDGE_KERNEL_COUNT && edge_kernel_requirements[entry]; }

int edge_kernel_source(int isa, int entry) {
    return isa >= 0 && isa < EDGE_ISA_COUNT && entry >= 0 && entry < EDGE_KERNEL_COUNT ? edge_sources[isa][entry] : -1;
}

void edge_quantize_q8_blocks(int isa, const float *x, int64_t nblocks, int8_t *codes, float *scales) {
    edge_kernels_at(isa)->quantize(x, nblocks, codes, scales);
}

void edge_attn_values_q8(int isa, const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales,
                         int64_t npos, int64_t hd, float *out, int64_t ostride) {
    edge_kernels_at(isa)->attn_values_q8(p, pstride, nq, v, vscales, npos, hd, out, ostride);
}

void edge_attn_scores_f16(int isa, const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out) {
    edge_kernels_at(isa)->attn_scores_f16(q, k, npos, hd, out);
}

void edge_attn_values_f16(int isa, const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out) {
    edge_kernels_at(isa)->attn_values_f16(p, v, npos, hd, out);
}

void edge_swiglu(int isa, float *gate, const float *up, int64_t n) { edge_kernels_at(isa)->swiglu(gate, up, n); }

void edge_geglu(int isa, float *gate, const float *up, int64_t n) { edge_kernels_at(isa)->geglu(gate, up, n); }

float edge_scale_max(int isa, float *row, int64_t n, float scale) { return edge_kernels_at(isa)->scale_max(row, n, scale); }

float edge_exp_sum(int isa, float *row, int64_t n, float max) { return edge_kernels_at(isa)->exp_sum(row, n, max); }

void edge_f16_to_f32(int isa, const uint16_t *src, float *dst, int64_t n) { edge_kernels_at(isa)->f16_to_f32(src, dst, n); }

uint16_t edge_fit_q4(int isa, const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return edge_kernels_at(isa)->fit_q4(x, w, n, codes, truncate);
}

uint16_t edge_fit_q4a(int isa, const float *x, const float *w, int64_t n, int8_t *codes, int truncate) {
    return edge_kernels_at(isa)->fit_q4a(x, w, n, codes, truncate);
}

double edge_dot_f64(int isa, const double *a, const double *b, int64_t n) { return edge_kernels_at(isa)->dot_f64(a, b, n); }

void edge_dots_f64(int isa, const double *a, const double *b, int64_t n, int64_t segment, double *out) {
    edge_kernels_at(isa)->dots_f64(a, b, n, segment, out);
}

void edge_sub_scaled_f64(int isa, double *y, const double *x, double a, int64_t n) { edge_kernels_at(isa)->sub_scaled_f64(y, x, a, n); }

void edge_gram_rows_f32(int isa, const float *a, const float *b, int64_t tokens, int64_t width, int64_t i0, int64_t i1,
                        float *g) {
    edge_kernels_at(isa)->gram_rows_f32(a, b, tokens, width, i0, i1, g);
}
