// The matrix product's one entry, over the scheme kernel the caller passes (each scheme's file defines its own
// `edge_scheme_` function), and the kernels of q8 and q4, whose products are the level's own kernels.
#include "internal.h"

static void q8_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (tokenwise ? k->tokenwise_q8 : k->matmul_q8)(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

static void q4_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (tokenwise ? k->tokenwise_q4 : k->matmul_q4)(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

EDGE_SCHEME(q8, q8_product, 1)
EDGE_SCHEME(q4, q4_product, 1)

void edge_matmul(int isa, const edge_scheme_kernel *scheme, EDGE_MATMUL_ARGS(void)) {
    if (scheme) scheme->product(edge_kernels_at(isa), 0, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

void edge_matmul_tokenwise(int isa, const edge_scheme_kernel *scheme, int64_t chunk_rows, EDGE_MATMUL_ARGS(void)) {
    const edge_kernels *k = edge_kernels_at(isa);
    if (!scheme) return;
    if (scheme->tokenwise) {
        scheme->product(k, 1, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
        return;
    }
    if (chunk_rows < 1) chunk_rows = r1 - r0;
    for (int64_t c = r0; c < r1; c += chunk_rows)
        for (int64_t t = 0; t < ntok; t++)
            scheme->product(k, 0, w, ws, nblocks, gblocks, c, r1 - c < chunk_rows ? r1 : c + chunk_rows, x + t * nblocks * 32,
                            xs + t * nblocks, 1, out + t * ots, ors, ots);
}
