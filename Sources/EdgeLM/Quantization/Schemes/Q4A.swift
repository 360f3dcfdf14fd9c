import CEdgeKernels

extension SchemeTraits {
    /// q4a: unsigned nibbles n with a zero point z, weight = s (n - z); one word per group holds a 12-bit scale and z.
    static let q4a = SchemeTraits(
        blockBytes: 16, isFourBit: true, isFittable: true, kernel: { edge_scheme_q4a() },
        codec: .groups(
            GroupCodes(
                storage: .offset { Int($0 & 15) },
                scale: { HalfFloat.toFloat(edge_q4a_scale_half($0)) },
                fit: { x, w, n, codes, truncate, level in edge_fit_q4a(level.rawValue, x, w, Int64(n), codes, truncate ? 1 : 0) },
                varianceWeighted: true,
                nearestCode: { v, word in min(15 - Double(word & 15), max(-Double(word & 15), v.rounded(.toNearestOrEven))) },
                // The codes are relative to the zero point: a scale that cannot be stored with it is no solution.
                refitWord: { s, fitted in
                    let word = edge_q4a_word(Float(s), Int32(fitted & 15))
                    return word != 0 && word & 15 == fitted & 15 ? word : nil
                })),
        overflow: .zeroWords("q4a's 12-bit scale"))
}
