// The AVX-VNNI level: VEX-encoded `vpdpbusd` on 256-bit registers (Intel Alder Lake and later client
// CPUs, which lack AVX-512; AMD Zen 5). q8 moves w's sign onto x as the AVX2 level does; q4 starts each
// row's accumulator at -(8 . x) and adds nibbles . x.
#if defined(__x86_64__)
#define K256_ATTR __attribute__((target("avx2,fma,f16c,avxvnni")))
#define K256_DPBUSD(acc, u, s) _mm256_dpbusd_avx_epi32((acc), (u), (s))
#define K256_NAME(x) edge_avxvnni_##x
#define K256_Q8_DOT(a, w, x) K256_DPBUSD(_mm256_setzero_si256(), (a), _mm256_sign_epi8((x), (w)))
#define K256_Q4_CORR(x) _mm256_sub_epi32(_mm256_setzero_si256(), K256_DPBUSD(_mm256_setzero_si256(), _mm256_set1_epi8(8), (x)))
#define K256_Q4_PART(n, x, c) K256_DPBUSD((c), (n), (x))
#define K256_Q4_WIDEN(p) (p)
#define K256_Q4_PAIR(p0, p1) _mm256_hadd_epi32((p0), (p1))
#include "kernels256.h"
#define P256_VNNI 1
#include "packed256.h"
#endif
