import CEdgeKernels

extension SchemeTraits {
    /// q4: codes in [-8, 7] stored as nibbles n = code + 8, with an IEEE half scale per group (EdgeLM's scale search).
    static let q4 = SchemeTraits(
        blockBytes: 16, isFourBit: true, isFittable: true, kernel: { edge_scheme_q4() },
        codec: .groups(
            .symmetric(lo: -8, hi: 7, offset: 8) { x, w, n, codes, truncate, level in
                edge_fit_q4(level.rawValue, x, w, Int64(n), codes, truncate ? 1 : 0)
            }))
}
