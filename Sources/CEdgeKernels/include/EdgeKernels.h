// Integer dot-product kernels for EdgeLM with run-time CPU dispatch: the kernel contract.
//
// Layouts (see docs/FORMAT.md):
//  - Quantized rows are split into blocks of 32 weights. A q8 block is 32 int8 codes in [-127, 127];
//    a q4 block is 16 bytes, byte j holding element j in its low nibble and element j + 16 in its high
//    nibble, each stored as code + 8 (codes in [-8, 7]).
//  - Weight scales are IEEE half floats, one per group of `gblocks` consecutive blocks of a row
//    (`ngroups = ceil(nblocks / gblocks)` scales per row, row-major).
//  - Activations are quantized per block of 32 to int8 codes in [-127, 127] with one f32 scale per block.
//
// Every level computes each block's integer dot product exactly (int32) and differs from the generic
// reference (generic.c) only in the order of the float additions that apply the scales.
#ifndef EDGE_KERNELS_H
#define EDGE_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// Instruction-set levels the kernels can run at. A CPU supports a set of them (not an order: an
/// AVX-512 VNNI server part may lack AVX-VNNI); `edge_detect_isa` picks the fastest one it has.
typedef enum {
    /// Portable C.
    EDGE_ISA_GENERIC = 0,
    /// x86-64 AVX2 + FMA + F16C (`vpmaddubsw`/`vpmaddwd`).
    EDGE_ISA_AVX2 = 1,
    /// x86-64 AVX-VNNI: VEX `vpdpbusd` on 256-bit registers (client CPUs without AVX-512).
    EDGE_ISA_AVX_VNNI = 2,
    /// x86-64 AVX-512 F/BW/VL + VNNI (`vpdpbusd` on 512-bit registers).
    EDGE_ISA_AVX512_VNNI = 3,
    /// arm64 Advanced SIMD without the dot-product extension (`smull`/`sadalp`).
    EDGE_ISA_NEON = 4,
    /// arm64 FEAT_DotProd (`sdot`).
    EDGE_ISA_DOTPROD = 5,
    /// arm64 FEAT_I8MM (`smmla` for prompt batches, `sdot` otherwise).
    EDGE_ISA_I8MM = 6,
    EDGE_ISA_COUNT = 7,
} edge_isa;

/// The fastest level this CPU supports (cpuid + OS register state on x86; HWCAP or sysctl on arm64).
int edge_detect_isa(void);

/// 1 when this CPU (and this build) can run `isa`, else 0.
int edge_isa_supported(int isa);

/// The level's name as `EDGELM_KERNELS` spells it (`generic`, `avx2`, `avx-vnni`, `avx512`, `neon`,
/// `dotprod`, `i8mm`), or NULL for an unknown value.
const char *edge_isa_name(int isa);

/// The level's name for people (`generic C`, `AVX2`, `AVX-VNNI`, `AVX-512 VNNI`, `NEON`, ...), or NULL.
const char *edge_isa_title(int isa);

/// The level named `name` (as `edge_isa_name` spells it), or -1 when no level has that name.
int edge_isa_from_name(const char *name);

/// A spin-wait hint to the CPU (`pause` on x86, `yield` on arm64).
void edge_cpu_relax(void);

/// The value of a wait word (sequentially consistent).
uint32_t edge_word_load(const uint32_t *word);
/// Adds 1 to a wait word (sequentially consistent); wake its sleepers with `edge_word_wake_all`.
void edge_word_bump(uint32_t *word);
/// Sleeps while `*word == seen` (it may return early: callers check their condition again).
void edge_word_wait(uint32_t *word, uint32_t seen);
/// Wakes every thread sleeping on `word`.
void edge_word_wake_all(uint32_t *word);
/// Gives the CPU to another runnable thread, if any (`sched_yield`).
void edge_yield(void);

/// Quantizes `nblocks` blocks of 32 floats to int8 codes and one f32 scale per block.
/// Rounds to nearest, ties to even; the scale is max|x| / 127. Bit-exact at every level.
void edge_quantize_q8_blocks(int isa, const float *x, int64_t nblocks, int8_t *codes, float *scales);

/// A weight scheme's matrix kernel (opaque): each scheme's file defines one, returned by its `edge_scheme_` function.
/// Blocks of 32 weights, row-major, with 16-bit scale words per group of `gblocks` blocks (two per group where noted).
typedef struct edge_scheme_kernel edge_scheme_kernel;

/// q8: 32 int8 codes in [-127, 127]; an IEEE half scale per group.
const edge_scheme_kernel *edge_scheme_q8(void);
/// q4: 16 bytes, byte j holding element j in its low nibble and element j + 16 in its high nibble, each stored as
/// code + 8 (codes in [-8, 7]); an IEEE half scale per group.
const edge_scheme_kernel *edge_scheme_q4(void);
/// q4a: q4's bytes holding unsigned nibbles n in [0, 15], weight = s (n - z), one word per group: bits 15-4 are bits
/// 14-3 of the scale s as an IEEE half (s >= 0: its exponent and top 7 mantissa bits; `edge_q4a_scale_half`), bits
/// 3-0 the zero point z. Runs the level's q4 kernel on the decoded scales and adds Σ_groups s (8 - z) Σ xs_b Σ x_b.
const edge_scheme_kernel *edge_scheme_q4a(void);
/// q4o: q4's bytes holding unsigned nibbles n in [0, 15], weight = d n + m, two IEEE halves per group, d then m
/// (`ws[2 g]`, `ws[2 g + 1]`): ggml's Q4_1, and Q4_K's sub-blocks with their 6-bit scales and minimums multiplied
/// out. Runs the level's q4 kernel on the scales d and adds Σ_groups (m + 8 d) Σ xs_b Σ x_b.
const edge_scheme_kernel *edge_scheme_q4o(void);
/// q4n: q4's bytes holding indices n in [0, 15] into the codebook `edge_q4n_levels`, weight = s levels[n], an IEEE
/// half scale s (either sign) per group. Decodes rows to q8 blocks in chunks and runs the level's q8 kernel.
const edge_scheme_kernel *edge_scheme_q4n(void);
/// iq4nl: q4n's layout over ggml's IQ4_NL codebook `edge_iq4nl_levels` (GGUF IQ4_NL blocks carried over).
const edge_scheme_kernel *edge_scheme_iq4nl(void);
/// q5o: 20-byte blocks: q4's 16 bytes of nibbles (the low 4 bits of weights j and j + 16 in byte j), then bit 4 of
/// weight j in bit j of a little-endian uint32; n in [0, 31], weight = d n + m with two halves per group as q4o's
/// (ggml's Q5_0 with m = -16 d, Q5_1, and Q5_K's sub-blocks multiplied out).
const edge_scheme_kernel *edge_scheme_q5o(void);
/// q6: 24-byte blocks: q4's 16 bytes of nibbles, then bits 4-5 of weight j at bits 2 (j / 8) of byte 16 + j % 8;
/// n in [0, 63], weight = s (n - 32) with two halves per block (groups of 32 only): s of weights 0-15, then s of
/// weights 16-31 (ggml's Q6_K, its 16-weight sub-block scales multiplied out).
const edge_scheme_kernel *edge_scheme_q6(void);

/// out[r * out_row_stride + t * out_tok_stride] = dot(weight row r, activation t) for rows [row_begin, row_end)
/// and tokens [0, ntok), weights of `scheme` (`nblocks` blocks per row, scale words per `gblocks` blocks),
/// activation t's int8 codes at x + t * nblocks * 32 and its block scales at xs + t * nblocks.
void edge_matmul(int isa, const edge_scheme_kernel *scheme, const void *w, const uint16_t *ws, int64_t nblocks, int64_t gblocks,
                 int64_t row_begin, int64_t row_end, const int8_t *x, const float *xs, int64_t ntok, float *out,
                 int64_t out_row_stride, int64_t out_tok_stride);

/// `edge_matmul` computing each token exactly as a call with that token alone would, bit for bit (the batch
/// kernels sum in another order): q8, q4, q4a and q4o run the row-major multi-token tiles where the level has them;
/// other schemes take the rows `chunk_rows` at a time, each chunk for every token while it is in cache.
/// Speculative decoding verifies drafts with it.
void edge_matmul_tokenwise(int isa, const edge_scheme_kernel *scheme, int64_t chunk_rows, const void *w, const uint16_t *ws, int64_t nblocks,
                           int64_t gblocks, int64_t row_begin, int64_t row_end, const int8_t *x, const float *xs,
                           int64_t ntok, float *out, int64_t out_row_stride, int64_t out_tok_stride);

/// Rows packed sixteen at a time (packed.c): a copy of a q8, q4 or q4o matrix, laid out so that the AVX-512 kernel
/// advances sixteen rows per `vpdpbusd` (the 256-bit kernels eight per `vpdpbusd` or `vpmaddubsw`) and applies a
/// block's scales (and q4o's offsets) to them in one FMA. Only
/// the whole groups are packed (rows [0, nrows / 16 * 16)); the copy has as many bytes as those rows with one scale
/// (and offset) per block. `edge_packed_bytes` is its size, `edge_pack_rows` writes groups [g0, g1) of it (rows
/// [16 g0, 16 g1)) from the row-major matrix (scale words per `gblocks` blocks, repeated for each block of a group
/// in the copy), so that threads can pack parts of one matrix.
typedef enum { EDGE_PACKED_Q8 = 0, EDGE_PACKED_Q4 = 1, EDGE_PACKED_Q4O = 2 } edge_packed_kind;
int64_t edge_packed_bytes(int kind, int64_t nrows, int64_t nblocks);
void edge_pack_rows(int kind, const void *w, const uint16_t *ws, int64_t nrows, int64_t nblocks, int64_t gblocks, int64_t g0,
                    int64_t g1, void *packed);

/// 1 when `isa` has its own packed kernel for `kind` and it beats the row-major kernels there (AVX-512 VNNI and
/// AVX-VNNI: every kind; AVX2: q4), so that rows of that kind are worth packing for the level.
int edge_packed_native(int isa, int kind);

/// sums[b] = x[32 b] + ... + x[32 b + 31] for `nblocks` blocks of activation codes: what the packed products add per
/// block besides the codes (computed once per quantized input, shared by every matrix that reads it).
void edge_block_sums(const int8_t *x, int64_t nblocks, int32_t *sums);

/// `edge_matmul` over a packed copy, rows [row_begin, row_end) (multiples of 16 within the packed groups), with the
/// activation blocks' sums (`edge_block_sums`, token-major like `xs`): each
/// (row, token) sums its blocks in order, acc = fma(dot, weight scale * activation scale, acc) (q4o: then
/// acc = fma(offset, activation scale * sum of the activation block, acc)), the same bits in a batch as alone, at
/// every level (so it serves decode, prompt batches and speculative verification alike).
void edge_packed_matmul(int isa, int kind, const void *packed, int64_t nrows, int64_t nblocks, int64_t row_begin,
                        int64_t row_end, const int8_t *x, const float *xs, const int32_t *sums, int64_t ntok, float *out,
                        int64_t out_row_stride, int64_t out_tok_stride);

/// The number of entries in a level's kernel table (the kernels dispatch.c fills per level).
int edge_kernel_count(void);
/// Entry `entry`'s name (`matmul_q8`, `fit_q4`, ...), or NULL outside [0, edge_kernel_count()).
const char *edge_kernel_name(int entry);
/// 1 when every level must set entry `entry`; 0 for a kernel only some levels have (the generic path runs without).
int edge_kernel_required(int entry);
/// The level whose code fills entry `entry` of level `isa`'s table: `isa` itself for its own kernel, a lower level
/// for a fallback dispatch.c names, -1 when unset.
int edge_kernel_source(int isa, int entry);

/// q4n's 16 levels, ascending int8 values in [-127, 113]; level 8 is 0.
extern const int8_t edge_q4n_levels[16];
/// IQ4_NL's 16 levels, ascending int8 values in [-127, 113]; none is 0 (level 8 is 1).
extern const int8_t edge_iq4nl_levels[16];
/// The index of the iq4nl level nearest v (on a midpoint: the upper one).
int edge_iq4nl_index(float v);
/// `edge_fit_q4n` over IQ4_NL's levels.
uint16_t edge_fit_iq4nl(const float *x, const float *w, int64_t n, int8_t *codes);

/// The index of the q4n level nearest v (v on the midpoint of two levels: the upper one).
int edge_q4n_index(float v);

/// Fits one q4n group of `n` weights `x` with importance `w` (NULL: all 1): the half scale of least
/// Σ w (x - s c)² among s = ±f m / 127 (m the largest-magnitude weight, f from 0.60 to 1.30 by 0.01), codes c
/// the nearest levels; writes the n chosen levels (values, not indices) to `codes`.
/// All-zero groups (and groups whose scale overflows a half) get word 0 and zero codes.
uint16_t edge_fit_q4n(const float *x, const float *w, int64_t n, int8_t *codes);

/// The IEEE half bits of a q4a scale word's scale.
uint16_t edge_q4a_scale_half(uint16_t word);

/// The q4a word of the 12-bit scale nearest to s (the half's bits rounded to nearest, ties up) and zero point
/// z in [0, 15]; 0 when s is not positive or rounds to no finite 12-bit scale.
uint16_t edge_q4a_word(float s, int z);

// Attention over a KV cache stored per KV head: `npos` rows of `hd` values, row j at j * hd.
//  - q8 rows: int8 codes in [-127, 127] with one IEEE half scale per block of 32 (hd a multiple of 32;
//    shorter heads are zero-padded to 32). Scores of a q8 K cache are the q8 `edge_matmul` of the keys with
//    the quantized queries (group heads x tokens as the tokens).
//  - f16 rows: IEEE halves.

/// out[q * ostride + d] += sum_j p[q * pstride + j] * vscales[j * hd / 32 + d / 32] * v[j * hd + d] for
/// q < nq, d < hd: the value sums of `nq` queries (the heads of a GQA group, several tokens) over one q8 V
/// cache, each value row dequantized in registers once and applied to every query.
void edge_attn_values_q8(int isa, const float *p, int64_t pstride, int64_t nq, const int8_t *v, const uint16_t *vscales,
                         int64_t npos, int64_t hd, float *out, int64_t ostride);

/// out[j] = sum_d q[d] * k[j * hd + d], j < npos: the scores of one query against an f16 K cache.
void edge_attn_scores_f16(int isa, const float *q, const uint16_t *k, int64_t npos, int64_t hd, float *out);

/// out[d] += sum_j p[j] * v[j * hd + d], d < hd: the value sum of an f16 V cache.
void edge_attn_values_f16(int isa, const float *p, const uint16_t *v, int64_t npos, int64_t hd, float *out);

/// row[j] *= scale for j < n; returns the largest product (-infinity for n = 0). Every level computes the
/// same products and, for finite scores, the same largest value.
float edge_scale_max(int isa, float *row, int64_t n, float scale);

/// row[j] = exp(row[j] - max) for j < n (the softmax numerators of one query's scores); returns their
/// sum. The generic level calls expf; the SIMD levels evaluate Cephes' single-precision exp (the argument
/// split by ln 2 in two parts, a degree-5 polynomial, the power of two put into the exponent), within
/// 2 ulp of expf for arguments in [ln(FLT_MIN), 88] (about [-87.34, 88]), 0 below (where expf is
/// subnormal) and NaN for NaN; sums in another order, within n float epsilons of the sum.
float edge_exp_sum(int isa, float *row, int64_t n, float max);

/// gate[i] = gate[i] / (1 + exp(-gate[i])) * up[i] for i < n: SwiGLU in place, with `edge_exp_sum`'s exp
/// on the SIMD levels (within 4 ulp of the generic expf loop).
void edge_swiglu(int isa, float *gate, const float *up, int64_t n);

/// gate[i] = gelu(gate[i]) * up[i] for i < n: GeGLU in place with GELU's tanh approximation, 0.5 g (1 + tanh(u)),
/// u = sqrt(2 / pi) (g + 0.044715 g^3). The generic level evaluates that formula with tanhf; the SIMD levels its
/// equal g / (1 + exp(-2u)) with `edge_exp_sum`'s exp (within 2e-6 |g up| of it in double).
void edge_geglu(int isa, float *gate, const float *up, int64_t n);

/// Fits one q4 group of `n` weights `x` (a multiple of 8; padding zeros cost nothing) with importance `w`
/// (n values >= 0; NULL for a plain fit, the same as all 1): returns the f16 scale bits and writes n codes in [-8, 7]. The scale
/// search of EdgeLM's quantizer minimises Σ w (x - s q)²: candidates are the largest-magnitude weight mapped to
/// -k for k = 6.5, 6.6, ..., 8.5 (f16-rounded), each followed by the weighted least-squares refit of its codes;
/// the first candidate with the least error wins. Codes round to nearest even, or toward zero when `truncate`
/// (only tests use that). The vector version for level `isa` (AVX-512, AVX for the 256-bit x86 levels, 4-lane
/// SSE/NEON otherwise); `edge_fit_q4_reference` is the scalar one, and all give identical results.
uint16_t edge_fit_q4(int isa, const float *x, const float *w, int64_t n, int8_t *codes, int truncate);
uint16_t edge_fit_q4_reference(const float *x, const float *w, int64_t n, int8_t *codes, int truncate);

/// Fits one q4a group of `n` weights (padding zeros cost nothing): returns its scale word and writes n codes
/// c = n - z in [-z, 15 - z]. The range [min(x, 0), max(x, 0)] over 15 is scaled by 0.80, 0.82, ..., 1.10; each
/// scale is tried with the zero point that maps 0 nearest to where min(x, 0) sits and its two neighbours, then
/// with the weighted least-squares refit of its codes; the first candidate with the least Σ w (x - s c)² wins.
/// All-zero groups get word 0. `edge_fit_q4a_reference` is the scalar search; the level's version evaluates
/// eight candidates per vector, and all give identical results.
uint16_t edge_fit_q4a(int isa, const float *x, const float *w, int64_t n, int8_t *codes, int truncate);
uint16_t edge_fit_q4a_reference(const float *x, const float *w, int64_t n, int8_t *codes, int truncate);

/// Fits one q8 group: scale = f16(max|x| / 127), codes = round(x / scale) in [-127, 127].
uint16_t edge_fit_q8(const float *x, int64_t n, int8_t *codes, int truncate);

/// Compresses `blocks` 64-byte blocks into the SHA-256 `state` (A..H) with the CPU's SHA instructions and
/// returns 1, or returns 0 without touching anything when the CPU has none (the caller then hashes itself).
int edge_sha256_blocks(uint32_t state[8], const uint8_t *data, int64_t blocks);

/// SHA-256's 64 round constants.
const uint32_t *edge_sha256_constants(void);

/// The first i in [start, n) with v[i] > floor (NaN never is), or n: 16 values compared at a time (the sampler's
/// top-k and argmax passes over the vocabulary). Portable vector code, the same on every level.
int64_t edge_first_above(const float *v, int64_t start, int64_t n, float floor);

/// dst[i] = the IEEE half src[i] as a float, exactly, for i < n (F16C at the x86 levels, which all have it).
void edge_f16_to_f32(int isa, const uint16_t *src, float *dst, int64_t n);

/// GPTQ's arithmetic (gptq.c): every level returns the generic code's bits (no fused multiply-add, fixed order).
/// Σ a[k]·b[k] for k < n: lanes k mod 16 summed apart, then pairwise, then the tail in order.
double edge_dot_f64(int isa, const double *a, const double *b, int64_t n);
/// out[s] = edge_dot_f64 of segment s ([s·segment, min(n, (s+1)·segment))) for every segment of n elements.
void edge_dots_f64(int isa, const double *a, const double *b, int64_t n, int64_t segment, double *out);
/// y[j] -= a·x[j] for j < n.
void edge_sub_scaled_f64(int isa, double *y, const double *x, double a, int64_t n);
/// Rows [i0, i1) of g ([width, width]): g[i][j] += a_t[i]·b_t[j] for every j, for each of the `tokens` rows
/// a_t, b_t of a and b ([tokens, width]) in order (a_t[i] = 0 skipped); with b NULL, the upper triangle of
/// a's own moments (j >= i, b = a).
void edge_gram_rows_f32(int isa, const float *a, const float *b, int64_t tokens, int64_t width, int64_t i0, int64_t i1,
                        float *g);

#ifdef __cplusplus
}
#endif

#endif
