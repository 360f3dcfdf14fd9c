// The matrix product's one entry: each weight scheme's kernel (defined in the scheme's file) by `edge_scheme`,
// run over the level's table.
#include "internal.h"

static void q8_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (tokenwise ? k->tokenwise_q8 : k->matmul_q8)(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

static void q4_product(const edge_kernels *k, int tokenwise, EDGE_MATMUL_ARGS(void)) {
    (tokenwise ? k->tokenwise_q4 : k->matmul_q4)(w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

const edge_scheme_kernel edge_scheme_q8 = { q8_product, 1 }, edge_scheme_q4 = { q4_product, 1 };

/// The schemes' kernels by `edge_scheme` (a value outside it: NULL).
static const edge_scheme_kernel *edge_scheme_at(int scheme) {
    static const edge_scheme_kernel *const schemes[EDGE_SCHEME_COUNT] = {
        [EDGE_SCHEME_Q8] = &edge_scheme_q8,   [EDGE_SCHEME_Q4] = &edge_scheme_q4,       [EDGE_SCHEME_Q4A] = &edge_scheme_q4a,
        [EDGE_SCHEME_Q4O] = &edge_scheme_q4o, [EDGE_SCHEME_Q4N] = &edge_scheme_q4n,     [EDGE_SCHEME_IQ4NL] = &edge_scheme_iq4nl,
        [EDGE_SCHEME_Q5O] = &edge_scheme_q5o, [EDGE_SCHEME_Q6] = &edge_scheme_q6,
    };
    return scheme >= 0 && scheme < EDGE_SCHEME_COUNT ? schemes[scheme] : NULL;
}

void edge_matmul(int isa, int scheme, EDGE_MATMUL_ARGS(void)) {
    const edge_scheme_kernel *kernel = edge_scheme_at(scheme);
    if (kernel) kernel->product(edge_kernels_at(isa), 0, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

void edge_matmul_tokenwise(int isa, int scheme, int64_t chunk_rows, EDGE_MATMUL_ARGS(void)) {
    const edge_scheme_kernel *kernel = edge_scheme_at(scheme);
    const edge_kernels *k = edge_kernels_at(isa);
    if (!kernel) return;
    if (kernel->tokenwise) {
        kernel->product(k, 1, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
        return;
    }
    if (chunk_rows < 1) chunk_rows = r1 - r0;
    for (int64_t c = r0; c < r1; c += chunk_rows)
        for (int64_t t = 0; t < ntok; t++)
            kernel->product(k, 0, w, ws, nblocks, gblocks, c, r1 - c < chunk_rows ? r1 : c + chunk_rows, x + t * nblocks * 32,
                            xs + t * nblocks, 1, out + t * ots, ors, ots);
}
