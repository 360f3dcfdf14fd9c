// 256-bit kernels with the EVEX `vpdpbusd` of AVX-512 VNNI + VL: the AVX-512 level's path for group
// sizes that split its block pairs (odd groups other than 1). Same arithmetic as x86/avxvnni.c.
#if defined(__x86_64__)
#define K256_ATTR __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))
#define K256_DPBUSD(acc, u, s) _mm256_dpbusd_epi32((acc), (u), (s))
#define K256_NAME(x) edge_vnni256_##x
#define K256_Q8_DOT(a, w, x) K256_DPBUSD(_mm256_setzero_si256(), (a), _mm256_sign_epi8((x), (w)))
#define K256_Q4_CORR(x) _mm256_sub_epi32(_mm256_setzero_si256(), K256_DPBUSD(_mm256_setzero_si256(), _mm256_set1_epi8(8), (x)))
#define K256_Q4_PART(n, x, c) K256_DPBUSD((c), (n), (x))
#define K256_Q4_WIDEN(p) (p)
#define K256_Q4_PAIR(p0, p1) _mm256_hadd_epi32((p0), (p1))
#define K256_WITHOUT_FUSED_Q4O  // the AVX-512 level has its own (x86/fused512.c)
#include "kernels256.h"
#endif
