import CEdgeKernels

extension SchemeTraits {
    /// q4o: unsigned nibbles n, weight = d n + m with two IEEE halves per group (ggml's Q4_1; Q4_K multiplied out).
    static let q4o = SchemeTraits(blockBytes: 16, wordsPerGroup: 2, isFourBit: true, kernel: { edge_scheme_q4o() }, codec: .offsets(bits: 4))
}
