// SHA-256 block compression with the x86 SHA extensions (`sha256rnds2`, `sha256msg1`, `sha256msg2`), for
// hashing multi-gigabyte checkpoints at conversion. The portable reference is EdgeLM's Swift SHA256; the
// test suite compares the two on random inputs of many lengths.
#include "EdgeKernels.h"

/// FIPS 180-4's round constants, shared with the Swift reference (`edge_sha256_constants`).
static const uint32_t edge_sha256_k[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

const uint32_t *edge_sha256_constants(void) { return edge_sha256_k; }

#if defined(__x86_64__)
#include <cpuid.h>
#include <immintrin.h>

static int edge_has_sha(void) {
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    return (b >> 29) & 1;
}

__attribute__((target("sha,sse4.1")))
static void edge_sha256_shani(uint32_t state[8], const uint8_t *data, int64_t blocks) {
    const __m128i mask = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    // The state as the instructions want it: ABEF and CDGH.
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1);   // CDAB
    __m128i s1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);    // EFGH
    __m128i s0 = _mm_alignr_epi8(tmp, s1, 8);                                             // ABEF
    s1 = _mm_blend_epi16(s1, tmp, 0xF0);                                                  // CDGH
    for (int64_t blk = 0; blk < blocks; blk++, data += 64) {
        const __m128i save0 = s0, save1 = s1;
        __m128i m[4];
        for (int g = 0; g < 16; g++) {
            // Group g: rounds 4g..4g+3 on message words m[g % 4]. Words 4(g+1).. are derived here from the
            // earlier ones (their slot already holds msg1 of words 4g-12.. with 4g-8..), before msg1 touches
            // the slot of words 4(g-1)..
            if (g < 4) m[g] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(data + 16 * g)), mask);
            __m128i msg = _mm_add_epi32(m[g & 3], _mm_loadu_si128((const __m128i *)&edge_sha256_k[4 * g]));
            s1 = _mm_sha256rnds2_epu32(s1, s0, msg);
            msg = _mm_shuffle_epi32(msg, 0x0E);
            s0 = _mm_sha256rnds2_epu32(s0, s1, msg);
            if (g >= 3 && g < 15) {
                const __m128i w7 = _mm_alignr_epi8(m[g & 3], m[(g - 1) & 3], 4);
                m[(g + 1) & 3] = _mm_sha256msg2_epu32(_mm_add_epi32(m[(g + 1) & 3], w7), m[g & 3]);
            }
            if (g >= 1 && g <= 12) m[(g - 1) & 3] = _mm_sha256msg1_epu32(m[(g - 1) & 3], m[g & 3]);
        }
        s0 = _mm_add_epi32(s0, save0);
        s1 = _mm_add_epi32(s1, save1);
    }
    tmp = _mm_shuffle_epi32(s0, 0x1B);          // FEBA
    s1 = _mm_shuffle_epi32(s1, 0xB1);           // DCHG
    s0 = _mm_blend_epi16(tmp, s1, 0xF0);        // DCBA
    s1 = _mm_alignr_epi8(s1, tmp, 8);           // HGFE
    _mm_storeu_si128((__m128i *)&state[0], s0);
    _mm_storeu_si128((__m128i *)&state[4], s1);
}

int edge_sha256_blocks(uint32_t state[8], const uint8_t *data, int64_t blocks) {
    static int sha = -1;
    int has = __atomic_load_n(&sha, __ATOMIC_RELAXED);
    if (has < 0) __atomic_store_n(&sha, has = edge_has_sha(), __ATOMIC_RELAXED);
    if (!has) return 0;
    edge_sha256_shani(state, data, blocks);
    return 1;
}
#else
int edge_sha256_blocks(uint32_t state[8], const uint8_t *data, int64_t blocks) {
    (void)state; (void)data; (void)blocks;
    return 0;
}
#endif
