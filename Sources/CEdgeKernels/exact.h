// For the files whose vector code must give its scalar reference's bits (quantize.c, gptq.c): no fused
// multiply-adds, and no GCC warning about the calling convention of wide vectors, which these files only
// pass between always-inlined helpers (GCC reports it at the end of a file, so it is off for all of it).
#ifndef EDGE_KERNELS_EXACT_H
#define EDGE_KERNELS_EXACT_H

#if defined(__clang__)
#pragma clang fp contract(off)
#else
#pragma GCC optimize("fp-contract=off")
#endif
#pragma GCC diagnostic ignored "-Wpsabi"

#endif
