// Rows packed sixteen at a time for the AVX-512 kernels (x86/packed512.c): a group of 16 rows keeps, per block,
// its codes as vectors of one 32-bit word per row (vector j holds bytes 4j..4j+3 of every row's block), so one
// `vpdpbusd` with a broadcast activation word advances all sixteen rows, each row's dot stays in its own lane,
// and one convert and FMA apply a block's scales to the whole group (the row-major layout spends a convert,
// FMA and horizontal sum per row). Codes are unsigned: q4 and q4o keep their nibbles (q4's code + 8), q8 stores
// code + 128, so a q8 or q4 block's dot starts from -128 or -8 times the sum of the activation block; q4o adds its
// offset times that sum in a second FMA. Same bytes as the row-major matrix with one scale per block:
// [groups][nblocks][vectors][64] codes (8 vectors for q8, 4 for q4 and q4o), then [groups][nblocks][16] f16
// scales, then for q4o [groups][nblocks][16] f16 offsets. Rows past the last whole group stay with the row-major
// kernels.
#include "internal.h"

#include <math.h>

/// Bytes of one 16-row group's block: codes, scales and (q4o) offsets.
static int64_t packed_block_bytes(int kind) { return edge_packed_vectors(kind) * 64 + (kind == EDGE_PACKED_Q4O ? 64 : 32); }

int64_t edge_packed_bytes(int kind, int64_t nrows, int64_t nblocks) { return nrows / 16 * nblocks * packed_block_bytes(kind); }

void edge_pack_rows(int kind, const void *w, const uint16_t *ws, int64_t nrows, int64_t nblocks, int64_t gblocks, int64_t g0,
                    int64_t g1, void *packed) {
    const int64_t vectors = edge_packed_vectors(kind), block_bytes = kind == EDGE_PACKED_Q8 ? 32 : 16, groups = nrows / 16;
    const int64_t ngroups = (nblocks + gblocks - 1) / gblocks, words = kind == EDGE_PACKED_Q4O ? 2 : 1;
    const uint32_t flip = kind == EDGE_PACKED_Q8 ? 0x80808080u : 0;  // q8 codes + 128
    const uint8_t *rows = w;
    uint8_t *codes = packed;
    uint16_t *scales = edge_packed_scales(packed, kind, nrows, nblocks), *offsets = edge_packed_offsets(packed, kind, nrows, nblocks);
    for (int64_t g = g0; g < g1 && g < groups; g++)
        for (int64_t b = 0; b < nblocks; b++) {
            uint8_t *v = codes + (g * nblocks + b) * vectors * 64;
            for (int i = 0; i < 16; i++) {
                const int64_t r = 16 * g + i, scale = (r * ngroups + b / gblocks) * words;
                const uint8_t *block = rows + (r * nblocks + b) * block_bytes;
                for (int64_t j = 0; j < vectors; j++) {
                    uint32_t word;
                    memcpy(&word, block + 4 * j, sizeof word);
                    word ^= flip;
                    memcpy(v + j * 64 + 4 * i, &word, sizeof word);
                }
                scales[(g * nblocks + b) * 16 + i] = ws[scale];
                if (kind == EDGE_PACKED_Q4O) offsets[(g * nblocks + b) * 16 + i] = ws[scale + 1];
            }
        }
}

/// The reference: each row's blocks in order, acc = fma(dot, scale_w * scale_x, acc), for q4o then
/// acc = fma(offset, scale_x * sum(x), acc), as the vector kernels sum them (from the codes: `sums` is not read).
void edge_generic_packed(int kind, const uint8_t *p, int64_t nrows, int64_t nblocks, int64_t r0, int64_t r1, const int8_t *x,
                         const float *xs, const int32_t *sums, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    (void)sums;
    const int64_t vectors = edge_packed_vectors(kind);
    const uint16_t *scales = edge_packed_scales(p, kind, nrows, nblocks), *offsets = edge_packed_offsets(p, kind, nrows, nblocks);
    for (int64_t r = r0; r < r1; r++) {
        const int64_t g = r / 16, i = r % 16;
        for (int64_t t = 0; t < ntok; t++) {
            float acc = 0;
            for (int64_t b = 0; b < nblocks; b++) {
                const uint8_t *v = p + (g * nblocks + b) * vectors * 64;
                const int8_t *xb = x + (t * nblocks + b) * 32;
                const int64_t s = (g * nblocks + b) * 16 + i;
                int32_t dot = 0, sum = 0;
                for (int k = 0; k < 32; k++) {
                    const int j = k % 16 / 4, byte = 4 * i + k % 4;
                    const int nibble = k < 16 ? v[j * 64 + byte] & 15 : v[j * 64 + byte] >> 4;
                    const int code = kind == EDGE_PACKED_Q8 ? v[(k / 4) * 64 + byte] - 128 : kind == EDGE_PACKED_Q4 ? nibble - 8 : nibble;
                    dot += code * xb[k];
                    sum += xb[k];
                }
                const float xscale = xs[t * nblocks + b];
                acc = fmaf((float)dot, edge_half_to_float(scales[s]) * xscale, acc);
                if (kind == EDGE_PACKED_Q4O) acc = fmaf(edge_half_to_float(offsets[s]), xscale * (float)sum, acc);
            }
            out[r * ors + t * ots] = acc;
        }
    }
}

void edge_block_sums(const int8_t *x, int64_t nblocks, int32_t *sums) {
    for (int64_t b = 0; b < nblocks; b++) {
        int32_t sum = 0;
        for (int k = 0; k < 32; k++) sum += x[b * 32 + k];
        sums[b] = sum;
    }
}

int edge_packed_native(int isa, int kind) {
    if (isa <= EDGE_ISA_GENERIC || !edge_isa_supported(isa)) return 0;
#if defined(__x86_64__)
    // AVX2 (no `vpdpbusd`), forced on Zen 4, against the row-major kernels: packed q4 decode 1.2-2.7x and prompts
    // 0.9x; q8 decode the same from DRAM (s110m, tl1b) and 1.6x only in cache (s15m), prompts 0.67-0.85x (the sign
    // trick per vector and token); q4o decode 1.02x, prompts 0.84x. Only q4 is packed.
    if (isa == EDGE_ISA_AVX2 && kind != EDGE_PACKED_Q4) return 0;
#else
    (void)kind;
#endif
    for (int e = 0; e < edge_kernel_count(); e++)
        if (strcmp(edge_kernel_name(e), "packed") == 0) return edge_kernel_source(isa, e) == isa;
    return 0;
}

void edge_packed_matmul(int isa, int kind, const void *packed, int64_t nrows, int64_t nblocks, int64_t r0, int64_t r1,
                        const int8_t *x, const float *xs, const int32_t *sums, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    edge_kernels_at(isa)->packed(kind, packed, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
}
