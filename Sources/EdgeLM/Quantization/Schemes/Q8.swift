import CEdgeKernels

extension SchemeTraits {
    /// q8: int8 codes in [-127, 127] with an IEEE half scale per group (max|w| / 127).
    static let q8 = SchemeTraits(
        blockBytes: 32, isFourBit: false, isFittable: true, kernel: { edge_scheme_q8() },
        codec: .groups(
            .symmetric(lo: -127, hi: 127, offset: 0) { x, _, n, codes, truncate, _ in
                edge_fit_q8(x, Int64(n), codes, truncate ? 1 : 0)
            }))
}
