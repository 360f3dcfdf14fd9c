/// A per-tensor exception to a conversion's matrix type, written `PATTERN=TYPE[:GROUP]` (`edgelm quantize
/// --tensor-type`): attention and FFN matrices whose canonical name matches PATTERN (`*` matches any run of
/// characters, everything else itself; `blk.0.*`, `*.ffn_down`) are stored as TYPE with GROUP weights per
/// scale (0: one per row; omitted: the type's default). The first matching rule wins.
public struct TensorTypeRule: Sendable, Equatable, CustomStringConvertible {
    /// Name pattern.
    public let pattern: String
    /// Scheme of the matching matrices.
    public let scheme: TensorScheme
    /// Weights per scale of the matching matrices.
    public let groupSize: Int

    /// Creates a rule.
    public init(pattern: String, scheme: TensorScheme, groupSize: Int? = nil) throws(EdgeLMError) {
        guard !pattern.isEmpty else { throw .invalidArgument("--tensor-type: empty name pattern") }
        let g = groupSize ?? ConversionOptions.defaultGroupSize(scheme)
        guard ConversionOptions.isValidGroupSize(g) else {
            throw .invalidArgument(
                "--tensor-type \(pattern)=\(scheme.rawValue):\(g): the group size must be 0 (per channel) or a multiple of \(TensorLayout.blockSize)")
        }
        self.pattern = pattern
        self.scheme = scheme
        self.groupSize = g
    }

    /// Parses `PATTERN=TYPE[:GROUP]`.
    public init(parsing text: String) throws(EdgeLMError) {
        guard let eq = text.lastIndex(of: "=") else {
            throw .invalidArgument("--tensor-type '\(text)': expected PATTERN=TYPE[:GROUP], for example 'blk.0.*=q8' or '*.ffn_down=q4:64'")
        }
        let spec = text[text.index(after: eq)...].split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(spec.count), let scheme = TensorScheme(rawValue: String(spec[0])) else {
            throw .invalidArgument(
                "--tensor-type '\(text)': the type must be one of \(TensorScheme.allCases.map(\.rawValue).joined(separator: ", ")), optionally followed by :GROUP"
            )
        }
        var group: Int?
        if spec.count == 2 {
            guard let g = Int(spec[1]) else { throw .invalidArgument("--tensor-type '\(text)': group size '\(spec[1])' is not a number") }
            group = g
        }
        try self.init(pattern: String(text[..<eq]), scheme: scheme, groupSize: group)
    }

    /// True when `name` matches the pattern as a whole.
    public func matches(_ name: String) -> Bool {
        let s = Array(name.utf8)
        let p = pattern.split(separator: "*", omittingEmptySubsequences: false).map { Array($0.utf8) }
        guard s.starts(with: p[0]) else { return false }
        if p.count == 1 { return s.count == p[0].count }
        var at = p[0].count
        for middle in p.dropFirst().dropLast() where !middle.isEmpty {
            guard let found = s[at...].firstRange(of: middle) else { return false }
            at = found.upperBound
        }
        let last = p[p.count - 1]
        return s.count - at >= last.count && s.suffix(last.count).elementsEqual(last)
    }

    /// The rule as written on the command line.
    public var description: String { "\(pattern)=\(scheme.rawValue):\(groupSize)" }
}
