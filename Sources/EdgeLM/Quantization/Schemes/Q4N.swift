import CEdgeKernels

extension SchemeTraits {
    /// q4n: nibbles indexing EdgeLM's 16-level codebook (`edge_q4n_levels`), weight = s · levels[n], a signed IEEE
    /// half scale per group.
    static let q4n = SchemeTraits(
        blockBytes: 16, isFourBit: true, isFittable: true, kernel: { edge_scheme_q4n() },
        codec: .groups(.codebook(Quantizer.q4nLevels, index: edge_q4n_index, fit: edge_fit_q4n)),
        overflow: .zeroWords("f16"))
}
