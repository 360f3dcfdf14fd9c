#include "EdgeKernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <cpuid.h>

static uint64_t edge_xgetbv(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

int edge_detect_isa(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return EDGE_ISA_GENERIC;
    int osxsave = (c >> 27) & 1, fma = (c >> 12) & 1, f16c = (c >> 29) & 1;
    if (!osxsave) return EDGE_ISA_GENERIC;
    uint64_t xcr0 = edge_xgetbv();
    int ymm_state = (xcr0 & 0x6) == 0x6;
    int zmm_state = (xcr0 & 0xE6) == 0xE6;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return EDGE_ISA_GENERIC;
    int avx2 = (b >> 5) & 1;
    int avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, avx512vl = (b >> 31) & 1;
    int vnni = (c >> 11) & 1;
    if (!(ymm_state && avx2 && fma && f16c)) return EDGE_ISA_GENERIC;
    if (zmm_state && avx512f && avx512bw && avx512vl && vnni) return EDGE_ISA_AVX512_VNNI;
    return EDGE_ISA_AVX2;
}
#else
int edge_detect_isa(void) { return EDGE_ISA_GENERIC; }
#endif

void edge_cpu_relax(void) {
#if defined(__x86_64__) || defined(_M_X64)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}
