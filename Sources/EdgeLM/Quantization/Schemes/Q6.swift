import CEdgeKernels

extension SchemeTraits {
    /// q6: 6-bit codes n - 32 (nibbles and a plane of bits 4-5: 24-byte blocks) with an IEEE half scale per 16
    /// weights, two per block (ggml's Q6_K); groups of 32 only.
    static let q6 = SchemeTraits(
        blockBytes: 24, wordsPerGroup: 2, isFourBit: false, kernel: { edge_scheme_q6() },
        codec: .sixBit)
}
