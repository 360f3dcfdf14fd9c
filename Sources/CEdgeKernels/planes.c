// q5o and q6: 5- and 6-bit codes as q4's nibbles plus planes of high bits (see EdgeKernels.h), the schemes that
// hold GGUF Q5_0, Q5_1, Q5_K and Q6_K without a second rounding. Both decode chunks of rows to q8 blocks and run
// the level's q8 kernel on them, so every level has them and their integer dots are the q8 kernel's, exact: q5o in
// q4a.c (its offsets are q4o's), q6 here, each block's two halves decoded as two q8 blocks (the first with the
// second half's codes zeroed and the other way round) against two copies of the activation block, so that each
// half gets its own scale.
#include "exact.h"
#include "internal.h"
#if defined(__x86_64__)
#include <emmintrin.h>
#elif defined(__aarch64__)
#include <arm_neon.h>
#endif

/// Rows decoded per call of the q8 kernel: 32 rows of a 5632-wide matrix are 352 KiB of doubled q8 blocks (L2).
enum { Q6_CHUNK = 32 };

/// The unsigned codes of one block as bytes, eight per word: the nibbles of its 16 bytes (weights 0-15 low, 16-31
/// high), then each plane's bits added above them (q5o: bit j of a little-endian uint32 → 16; q6: bits 2 (j / 8)
/// of byte 16 + j % 8 → 16 and 32). Word arithmetic: the plane of a byte's bits spread to 8 bytes by a multiply.
EDGE_INLINE void planes_codes(const uint8_t *block, int bits, uint64_t n[4]) {
    const uint64_t low = 0x0F0F0F0F0F0F0F0FULL;
    uint64_t a, b;
    memcpy(&a, block, 8);
    memcpy(&b, block + 8, 8);
    n[0] = a & low;
    n[1] = b & low;
    n[2] = (a >> 4) & low;
    n[3] = (b >> 4) & low;
    if (bits == 5) {
        for (int k = 0; k < 4; k++) {
            // Byte i of spread is bit i of the plane's byte k (0x01 << i), nonzero exactly where that bit is set.
            const uint64_t spread = ((uint64_t)block[16 + k] * 0x0101010101010101ULL) & 0x8040201008040201ULL;
            n[k] |= ((spread + 0x7F7F7F7F7F7F7F7FULL) & 0x8080808080808080ULL) >> 3;
        }
    } else {
        uint64_t plane;
        memcpy(&plane, block + 16, 8);
        for (int k = 0; k < 4; k++) n[k] |= ((plane >> (2 * k)) & 0x0303030303030303ULL) << 4;
    }
}

/// Stores the 16 bytes of words `a` (first) and `b`, each minus `bias`, as int8 codes (SSE2 and NEON: one
/// subtraction for the 16).
EDGE_INLINE void planes_store(uint64_t a, uint64_t b, int8_t bias, int8_t *out) {
#if defined(__x86_64__)
    _mm_storeu_si128((__m128i *)out, _mm_sub_epi8(_mm_set_epi64x((long long)b, (long long)a), _mm_set1_epi8(bias)));
#elif defined(__aarch64__)
    vst1q_s8(out, vsubq_s8(vreinterpretq_s8_u64(vcombine_u64(vcreate_u64(a), vcreate_u64(b))), vdupq_n_s8(bias)));
#else
    uint8_t bytes[16];
    memcpy(bytes, &a, 8);
    memcpy(bytes + 8, &b, 8);
    for (int j = 0; j < 16; j++) out[j] = (int8_t)(bytes[j] - bias);
#endif
}

void edge_decode_q5o(const uint8_t *w, int64_t nblocks, int8_t *out) {
    for (int64_t b = 0; b < nblocks; b++) {
        uint64_t n[4];
        planes_codes(w + b * 20, 5, n);
        planes_store(n[0], n[1], 16, out + b * 32);
        planes_store(n[2], n[3], 16, out + b * 32 + 16);
    }
}

/// Decodes `nblocks` q6 blocks (24 bytes each) into 2 nblocks q8 blocks: block 2b holds the codes of weights 0-15
/// of block b and zeros, block 2b + 1 zeros and the codes of weights 16-31.
static void decode_q6_halves(const uint8_t *w, int64_t nblocks, int8_t *out) {
    for (int64_t b = 0; b < nblocks; b++) {
        uint64_t n[4];
        planes_codes(w + b * 24, 6, n);
        int8_t *c = out + b * 64;
        planes_store(n[0], n[1], 32, c);
        memset(c + 16, 0, 32);
        planes_store(n[2], n[3], 32, c + 48);
    }
}

/// The q6 product: the level's register-built kernel for a few tokens where it has one, else rows decoded to q8
/// half blocks in chunks for its q8 kernel.
static void q6_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (void)tokenwise;
    if (k->planes_q6 && ntok <= EDGE_PLANES_FUSED_TOKENS) return k->planes_q6(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    (void)gblocks;  // one group per block: its two halves' scales
    const int64_t wide = 2 * nblocks;
    // doubled [ntok, wide * 32] and doubled_scales [ntok, wide]: each activation block twice; decoded
    // [Q6_CHUNK, wide * 32]: the chunk's rows as q8 half blocks.
    int8_t *doubled = edge_scratch(0, (size_t)(ntok * wide * 32)), *decoded = edge_scratch(1, (size_t)(Q6_CHUNK * wide * 32));
    float *doubled_scales = edge_scratch(2, (size_t)(ntok * wide) * sizeof *doubled_scales);
    for (int64_t t = 0; t < ntok; t++)
        for (int64_t b = 0; b < nblocks; b++)
            for (int k = 0; k < 2; k++) {
                memcpy(doubled + (t * wide + 2 * b + k) * 32, x + (t * nblocks + b) * 32, 32);
                doubled_scales[t * wide + 2 * b + k] = xs[t * nblocks + b];
            }
    for (int64_t r = r0; r < r1; r += Q6_CHUNK) {
        const int64_t n = r1 - r < Q6_CHUNK ? r1 - r : Q6_CHUNK;
        decode_q6_halves((const uint8_t *)w + r * nblocks * 24, n * nblocks, decoded);
        // The scale pairs of a row are the doubled row's per-block scales, in order.
        k->matmul_q8(decoded, ws + r * wide, wide, 1, 0, n, doubled, doubled_scales, ntok, out + r * ors, ors, ots);
    }
}

EDGE_SCHEME(q6, q6_product, 0)
