// The dot-product level (FEAT_DotProd: Apple M1 and later, Cortex-A76 and later as in the Raspberry
// Pi 5, Graviton 2 and later): two `sdot` per block of 32.
#if defined(__aarch64__)
#define K128_ATTR __attribute__((target("arch=armv8.2-a+dotprod")))
#define K128_NAME(x) edge_dotprod_##x
#define K128_DOT(w0, w1, x0, x1) vdotq_s32(vdotq_s32(vdupq_n_s32(0), (w0), (x0)), (w1), (x1))
#include "kernels128.h"
#endif
