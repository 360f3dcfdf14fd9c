import CEdgeKernels

extension SchemeTraits {
    /// iq4nl: q4n's layout over ggml's IQ4_NL codebook (`edge_iq4nl_levels`); GGUF IQ4_NL groups carried over.
    static let iq4nl = SchemeTraits(
        blockBytes: 16, isFourBit: true, kernel: { edge_scheme_iq4nl() },
        codec: .groups(.codebook(Quantizer.iq4nlLevels, index: edge_iq4nl_index, fit: edge_fit_iq4nl)),
        overflow: .zeroWords("f16"))
}
