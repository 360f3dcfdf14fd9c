import CEdgeKernels

extension SchemeTraits {
    /// q5o: 5-bit unsigned codes (nibbles and a plane of bit 4: 20-byte blocks), weight = d n + m with two IEEE halves
    /// per group (ggml's Q5_0, Q5_1; Q5_K multiplied out).
    static let q5o = SchemeTraits(blockBytes: 20, wordsPerGroup: 2, isFourBit: false, kernel: { edge_scheme_q5o() }, codec: .offsets(bits: 5))
}
