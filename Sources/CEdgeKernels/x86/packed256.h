// Rows packed sixteen at a time (packed.c has the layout) with 256-bit registers, instantiated by x86/avx2.c and
// x86/avxvnni.c after kernels256.h (K256_ATTR, K256_NAME) with
//   P256_VNNI   1 where `vpdpbusd` exists on 256-bit registers, 0 for `vpmaddubsw` and `vpmaddwd`.
// Each 64-byte vector of the layout is two halves of eight rows, and each half is summed as x86/packed512.c sums all
// sixteen rows: per block and token, one broadcast activation word per vector advances eight rows, each row's dot
// stays in its 32-bit lane, and one convert, multiply and FMA apply the block's scales to all eight.
//   - AVX-VNNI: `vpdpbusd` of the stored unsigned codes (q8 code + 128, q4 nibbles) with the activation word; the dot
//     starts from -128 or -8 times the activation block's sum (q4o: 0), as at AVX-512.
//   - AVX2 (q4, q4o): `vpmaddubsw` of nibbles and activations gives int16 pairs of at most 2 * 15 * 127; the eight
//     vectors of a block add up to 16 products per lane (<= 30,480, no saturation) before one `vpmaddwd` widens them.
//     q8 has no AVX2 form here: code + 128 times an activation could saturate `vpmaddubsw`, and with the sign trick
//     (|w| times sign(x, w), a sign and a widening per vector and token) packed q8 prompts ran at 0.67-0.85x the
//     row-major tiles while decode gained only where the weights sit in cache (AVX2 packs only q4 rows:
//     edge_packed_native), so the entry runs the reference for it.
// A single token prefetches the codes 4 KiB ahead (AVX2 q4 decode from DRAM: 1.3x -> 1.44x the row-major kernels, which
// prefetch as far).
// Every (row, token) sums its blocks in order with the reference's operations, so results are edge_generic_packed's
// bits, and a token's are the same in any batch.

#define P256_INLINE static inline __attribute__((always_inline)) K256_ATTR

/// Eight results of one token: rows ors apart.
P256_INLINE void p256_store(__m256 v, float *o, int64_t ors) {
    if (ors == 1) {
        _mm256_storeu_ps(o, v);
        return;
    }
    float lanes[8];
    _mm256_storeu_ps(lanes, v);
    for (int i = 0; i < 8; i++) o[i * ors] = lanes[i];
}

/// The exact dot of one half-block (eight rows) with activation words xw, from `start`: v holds the eight prepared code
/// vectors.
P256_INLINE __m256i p256_dot(const __m256i *v, const int32_t *xw, int32_t start) {
    __m256i lo = _mm256_setzero_si256(), hi = _mm256_setzero_si256();
#if P256_VNNI
    lo = _mm256_set1_epi32(start);
    for (int j = 0; j < 4; j++) {
        lo = _mm256_dpbusd_avx_epi32(lo, v[j], _mm256_set1_epi32(xw[j]));
        hi = _mm256_dpbusd_avx_epi32(hi, v[4 + j], _mm256_set1_epi32(xw[4 + j]));
    }
    return _mm256_add_epi32(lo, hi);
#else
    for (int j = 0; j < 4; j++) {
        lo = _mm256_add_epi16(lo, _mm256_maddubs_epi16(v[j], _mm256_set1_epi32(xw[j])));
        hi = _mm256_add_epi16(hi, _mm256_maddubs_epi16(v[4 + j], _mm256_set1_epi32(xw[4 + j])));
    }
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_add_epi16(lo, hi), _mm256_set1_epi16(1)), _mm256_set1_epi32(start));
#endif
}

/// Halves [h0, h0 + H) of group codes (half h: rows 8h..8h+7) against tokens [t, t + T): acc[i * T + k] holds the eight
/// rows of half h0 + i for token t + k. A single token takes both halves per block (each cache line read once).
P256_INLINE void p256_tile(const int kind, const int H, const int T, const uint8_t *codes, const uint16_t *scales,
                           const uint16_t *offsets, int64_t nblocks, int h0, const int8_t *x, const float *xs,
                           const int32_t *sums, int64_t t, __m256 *acc) {
    const int vectors = edge_packed_vectors(kind);
    const __m256i low = _mm256_set1_epi8(0x0F);
    for (int k = 0; k < H * T; k++) acc[k] = _mm256_setzero_ps();
    for (int64_t b = 0; b < nblocks; b++) {
        if (T == 1)
            for (int j = 0; j < vectors; j++) _mm_prefetch((const char *)(codes + b * vectors * 64 + 64 * j + 4096), _MM_HINT_T0);
        for (int i = 0; i < H; i++) {
            const int h = h0 + i;
            const uint8_t *p = codes + b * vectors * 64 + 32 * h;
            // v[j] holds elements 4j..4j+3 of each row, v[4 + j] elements 16+4j..16+4j+3 (q4: the low and high nibbles
            // of vector j; q8: vectors j and 4 + j).
            __m256i v[8];
            if (kind == EDGE_PACKED_Q8) {
                for (int j = 0; j < 8; j++) v[j] = _mm256_loadu_si256((const __m256i *)(p + 64 * j));
            } else {
                for (int j = 0; j < 4; j++) {
                    const __m256i both = _mm256_loadu_si256((const __m256i *)(p + 64 * j));
                    v[j] = _mm256_and_si256(both, low);
                    v[4 + j] = _mm256_and_si256(_mm256_srli_epi16(both, 4), low);
                }
            }
            const __m256 wscale = _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(scales + b * 16 + 8 * h)));
            const __m256 woffset = kind == EDGE_PACKED_Q4O ? _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(offsets + b * 16 + 8 * h)))
                                                           : _mm256_setzero_ps();
            for (int k = 0; k < T; k++) {
                const int64_t tb = (t + k) * nblocks + b;
                const __m256i dot = p256_dot(v, (const int32_t *)(x + tb * 32), edge_packed_start(kind, sums[tb]));
                const __m256 scale = _mm256_mul_ps(wscale, _mm256_set1_ps(xs[tb]));
                __m256 *r = acc + i * T + k;
                *r = _mm256_fmadd_ps(_mm256_cvtepi32_ps(dot), scale, *r);
                if (kind == EDGE_PACKED_Q4O) *r = _mm256_fmadd_ps(woffset, _mm256_set1_ps(xs[tb] * (float)sums[tb]), *r);
            }
        }
    }
}

/// Groups [r0 / 16, r1 / 16): a single token both halves at once, batches half by half in tiles of four tokens, then
/// one by one.
P256_INLINE void p256_rows(const int kind, const uint8_t *p, int64_t nrows, int64_t nblocks, int64_t r0, int64_t r1,
                           const int8_t *x, const float *xs, const int32_t *sums, int64_t ntok, float *out, int64_t ors,
                           int64_t ots) {
    const int64_t vectors = edge_packed_vectors(kind);
    const uint16_t *scales = edge_packed_scales(p, kind, nrows, nblocks), *offsets = edge_packed_offsets(p, kind, nrows, nblocks);
    for (int64_t g = r0 / 16; g < r1 / 16; g++) {
        const uint8_t *codes = p + g * nblocks * vectors * 64;
        const uint16_t *gs = scales + g * nblocks * 16, *go = offsets + g * nblocks * 16;
        float *o = out + 16 * g * ors;
        __m256 acc[4];
        if (ntok == 1) {
            p256_tile(kind, 2, 1, codes, gs, go, nblocks, 0, x, xs, sums, 0, acc);
            p256_store(acc[0], o, ors);
            p256_store(acc[1], o + 8 * ors, ors);
            continue;
        }
        for (int h = 0; h < 2; h++) {
            int64_t t = 0;
            for (; t + 4 <= ntok; t += 4) {
                p256_tile(kind, 1, 4, codes, gs, go, nblocks, h, x, xs, sums, t, acc);
                for (int k = 0; k < 4; k++) p256_store(acc[k], o + 8 * h * ors + (t + k) * ots, ors);
            }
            for (; t < ntok; t++) {
                p256_tile(kind, 1, 1, codes, gs, go, nblocks, h, x, xs, sums, t, acc);
                p256_store(acc[0], o + 8 * h * ors + t * ots, ors);
            }
        }
    }
}

K256_ATTR void K256_NAME(packed)(int kind, const uint8_t *p, int64_t nrows, int64_t nblocks, int64_t r0, int64_t r1,
                                 const int8_t *x, const float *xs, const int32_t *sums, int64_t ntok, float *out, int64_t ors,
                                 int64_t ots) {
    if (!P256_VNNI && kind == EDGE_PACKED_Q8) {
        edge_generic_packed(kind, p, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
        return;
    }
    if (P256_VNNI && kind == EDGE_PACKED_Q8) p256_rows(EDGE_PACKED_Q8, p, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
    else if (kind == EDGE_PACKED_Q4) p256_rows(EDGE_PACKED_Q4, p, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
    else p256_rows(EDGE_PACKED_Q4O, p, nrows, nblocks, r0, r1, x, xs, sums, ntok, out, ors, ots);
}
