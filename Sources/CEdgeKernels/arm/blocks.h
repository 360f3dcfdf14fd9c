// Weight blocks as signed int8 codes in NEON registers, shared by the arm64 kernels.
#ifndef EDGE_ARM_BLOCKS_H
#define EDGE_ARM_BLOCKS_H
#include "../internal.h"
#include <arm_neon.h>

/// IEEE half to float with the hardware conversion (`fcvt`).
static inline __attribute__((always_inline)) float k128_half(uint16_t h) {
    __fp16 f;
    memcpy(&f, &h, sizeof f);
    return (float)f;
}

/// One weight block as signed codes: elements 0-15 and 16-31.
typedef struct { int8x16_t lo, hi; } k128_block;

/// Loads a q8 block, or unpacks a q4 block's nibbles (code + 8) into signed codes.
static inline __attribute__((always_inline)) k128_block k128_load(const int q4, const uint8_t *p) {
    k128_block b;
    if (q4) {
        uint8x16_t packed = vld1q_u8(p);
        int8x16_t eight = vdupq_n_s8(8);
        b.lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(packed, vdupq_n_u8(0x0F))), eight);
        b.hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8(packed, 4)), eight);
    } else {
        b.lo = vld1q_s8((const int8_t *)p);
        b.hi = vld1q_s8((const int8_t *)p + 16);
    }
    return b;
}
#endif
