// The tile walk shared by the 256-bit x86 and 128-bit arm64 kernel templates: rows one at a time for
// decode (one token: the weight stream's best pattern), row pairs for batches, tokens in tiles of 4 then
// one by one. The including template defines
//   TILED_INLINE / TILED_ATTR   its function attributes,
//   TILED_NAME(x)               the exported name of kernel x,
//   TILED_TILE(q4, R, T, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, t, out, ors, ots)
//                               rows [r, r + R) times tokens [t, t + T).
// Its constant arguments (q4, R, T, per_channel) make each call site a specialised copy of the tile.

TILED_INLINE void tiled_rows(const int q4, const int R, const int per_channel, const uint8_t *w, const uint16_t *ws,
                             int64_t nblocks, int64_t gblocks, int64_t ngroups, int64_t r, const int8_t *x,
                             const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    int64_t t = 0;
    for (; t + 4 <= ntok; t += 4) TILED_TILE(q4, R, 4, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, t, out, ors, ots);
    for (; t < ntok; t++) TILED_TILE(q4, R, 1, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, t, out, ors, ots);
}

TILED_INLINE void tiled_matmul(const int q4, const int per_channel, const uint8_t *w, const uint16_t *ws,
                               int64_t nblocks, int64_t gblocks, int64_t r0, int64_t r1, const int8_t *x,
                               const float *xs, int64_t ntok, float *out, int64_t ors, int64_t ots) {
    int64_t ngroups = (nblocks + gblocks - 1) / gblocks, r = r0;
    if (ntok > 1)
        for (; r + 2 <= r1; r += 2) tiled_rows(q4, 2, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, ntok, out, ors, ots);
    for (; r < r1; r++) tiled_rows(q4, 1, per_channel, w, ws, nblocks, gblocks, ngroups, r, x, xs, ntok, out, ors, ots);
}

TILED_ATTR void TILED_NAME(matmul_q8)(EDGE_MATMUL_ARGS(int8_t)) {
    const uint8_t *wb = (const uint8_t *)w;
    if (gblocks >= nblocks) tiled_matmul(0, 1, wb, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    else tiled_matmul(0, 0, wb, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}

TILED_ATTR void TILED_NAME(matmul_q4)(EDGE_MATMUL_ARGS(uint8_t)) {
    if (gblocks >= nblocks) tiled_matmul(1, 1, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
    else tiled_matmul(1, 0, w, ws, nblocks, gblocks, r0, r1, x, xs, ntok, out, ors, ots);
}
