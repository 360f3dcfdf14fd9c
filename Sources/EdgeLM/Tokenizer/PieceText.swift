/// Helpers for the text of vocabulary pieces.
extension String {
    /// The byte of a SentencePiece byte piece "<0xXX>", or nil for any other piece.
    var byteTokenValue: UInt8? {
        let u = Array(utf8)
        guard u.count == 6, u[0] == 0x3C, u[1] == 0x30, u[2] == 0x78, u[5] == 0x3E else { return nil }
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }

    /// True for SentencePiece byte pieces "<0xXX>".
    var isByteToken: Bool { byteTokenValue != nil }

    /// Replaces every occurrence of the character `target` with `replacement`.
    func replacingOccurrences(of target: Character, with replacement: Character) -> String {
        String(map { $0 == target ? replacement : $0 })
    }
}
