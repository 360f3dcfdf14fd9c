import Foundation

/// The RoPE variants EdgeLM computes (Hugging Face `rope_type`).
public enum RopeKind: String, Codable, Sendable, CaseIterable {
    /// theta^(-2i/d).
    case `default`
    /// Every frequency divided by `factor` (position interpolation).
    case linear
    /// Llama 3.1: low frequencies divided by `factor`, high ones kept, a smooth ramp between.
    case llama3
    /// YaRN: interpolation blended into extrapolation by a ramp over dimensions, with an attention factor.
    case yarn
    /// Per-frequency divisors given with the weights (llama.cpp's `rope_freqs` tensor, how its converter
    /// stores Llama 3.1 scaling); not a Hugging Face `rope_type`.
    case factors = "rope_freqs"

    /// The `rope_type`s read from Hugging Face checkpoints, each checked against a float64 transformers forward pass
    /// (default and Llama 3 by the zoo goldens, linear and YaRN by `RopeTests.scaledRopeMatchesTransformers`).
    public static let fromCheckpoints: [RopeKind] = [.default, .linear, .llama3, .yarn]

    /// What a refusal of a GGUF's YaRN scaling adds to its message.
    static let yarnRefusal =
        "; YaRN from a GGUF (llama.cpp's own formulation) is not checked yet: convert the model from its Hugging Face folder, whose YaRN is checked against transformers"
}

/// One table of rotary frequencies, computed at conversion and stored in the model file: the runtime
/// only multiplies positions by `inverseFrequencies` (and cos/sin by `attentionFactor`).
public struct RopeTable: Codable, Sendable, Equatable {
    /// The variant the table was computed with.
    public var kind: RopeKind
    /// Base frequency.
    public var theta: Double
    /// The variant's parameters as read from the checkpoint (factor, original context, ...), for `inspect`.
    public var parameters: [String: Double]
    /// Angle per position of each rotated pair: [rotated dims / 2].
    public var inverseFrequencies: [Double]
    /// Factor applied to cos and sin (YaRN's attention scaling; 1 otherwise).
    public var attentionFactor: Double

    /// The plain table theta^(-2i/dims) for `dims` rotated dimensions.
    public static func standard(theta: Double, dims: Int) -> RopeTable {
        RopeTable(kind: .default, theta: theta, parameters: [:], inverseFrequencies: baseFrequencies(theta: theta, dims: dims), attentionFactor: 1)
    }

    static func baseFrequencies(theta: Double, dims: Int) -> [Double] {
        (0..<(dims / 2)).map { 1 / pow(theta, Double(2 * $0) / Double(dims)) }
    }

    /// Computes a table as Hugging Face transformers does for `kind`.
    /// - Parameters:
    ///   - parameters: the variant's settings (`factor`, `original_max_position_embeddings`,
    ///     `low_freq_factor`, `high_freq_factor`, `beta_fast`, `beta_slow`, `attention_factor`, `mscale`,
    ///     `mscale_all_dim`).
    ///   - contextLength: the model's `max_position_embeddings` (YaRN derives its factor from it when the
    ///     original context is given).
    ///   - field: the setting's name for errors.
    public static func compute(
        kind: RopeKind, theta: Double, dims: Int, parameters: [String: Double], contextLength: Int,
        field: String, path: String
    ) throws(EdgeLMError) -> RopeTable {
        func need(_ key: String) throws(EdgeLMError) -> Double {
            guard let v = parameters[key], v.isFinite else {
                throw .invalidField(path: path, field: "\(field).\(key)", message: "missing for rope_type '\(kind.rawValue)'")
            }
            return v
        }
        let base = baseFrequencies(theta: theta, dims: dims)
        var table = RopeTable(kind: kind, theta: theta, parameters: parameters, inverseFrequencies: base, attentionFactor: 1)
        switch kind {
        case .default:
            break
        case .factors:
            throw .invalidField(path: path, field: field, message: "'rope_freqs' divisors come only with GGUF weights")
        case .linear:
            let factor = try need("factor")
            guard factor >= 1 else { throw .invalidField(path: path, field: "\(field).factor", message: "\(factor) must be >= 1") }
            table.inverseFrequencies = base.map { $0 / factor }
        case .llama3:
            let factor = try need("factor"), low = try need("low_freq_factor"), high = try need("high_freq_factor")
            let original = try need("original_max_position_embeddings")
            guard factor >= 1, high > low, original > 0 else {
                throw .invalidField(path: path, field: field, message: "llama3 needs factor >= 1, high_freq_factor > low_freq_factor, an original context > 0")
            }
            let lowWavelength = original / low, highWavelength = original / high
            table.inverseFrequencies = base.map { f in
                let wavelength = 2 * Double.pi / f
                if wavelength < highWavelength { return f }
                if wavelength > lowWavelength { return f / factor }
                let smooth = (original / wavelength - low) / (high - low)
                return (1 - smooth) * f / factor + smooth * f
            }
        case .yarn:
            // As transformers 5 computes it: the original context defaults to the model's, and the factor to their ratio.
            let original = parameters["original_max_position_embeddings"] ?? Double(contextLength)
            let factor = parameters["factor"] ?? Double(contextLength) / original
            guard factor >= 1, original > 0 else {
                throw .invalidField(path: path, field: field, message: "yarn needs factor >= 1 and an original context > 0")
            }
            let betaFast = parameters["beta_fast"] ?? 32, betaSlow = parameters["beta_slow"] ?? 1
            func mscale(_ scale: Double, _ m: Double) -> Double { scale <= 1 ? 1 : 0.1 * m * log(scale) + 1 }
            if let a = parameters["attention_factor"] {
                table.attentionFactor = a
            } else if let m = parameters["mscale"], let all = parameters["mscale_all_dim"] {
                table.attentionFactor = mscale(factor, m) / mscale(factor, all)
            } else {
                table.attentionFactor = mscale(factor, 1)
            }
            func correctionDim(_ rotations: Double) -> Double {
                Double(dims) * log(original / (rotations * 2 * Double.pi)) / (2 * log(theta))
            }
            let low = max(floor(correctionDim(betaFast)), 0), high = min(ceil(correctionDim(betaSlow)), Double(dims - 1))
            let span = low == high ? 0.001 : high - low
            table.inverseFrequencies = base.enumerated().map { i, f in
                let ramp = min(1, max(0, (Double(i) - low) / span))
                let extrapolation = 1 - ramp
                return f / factor * (1 - extrapolation) + f * extrapolation
            }
        }
        return table
    }
}

/// The cos and sin of every rotary table at every position of a context (filled once), and the rotation of query
/// and key heads with them.
struct RotaryTables {
    let cos: UnsafeMutablePointer<Float>  // [tables, context, headDim / 2]
    let sin: UnsafeMutablePointer<Float>  // [tables, context, headDim / 2]
    let context: Int
    let headDim: Int
    /// Pairs (2i, 2i + 1) rotate together (GPT-J style); otherwise (i, i + headDim / 2) (NeoX style).
    let interleaved: Bool

    /// Fills `cos` and `sin` (each `tables.count * context * headDim / 2` floats, owned by the caller).
    init(tables: [RopeTable], context: Int, headDim: Int, interleaved: Bool, cos: UnsafeMutablePointer<Float>, sin: UnsafeMutablePointer<Float>) {
        self.cos = cos
        self.sin = sin
        self.context = context
        self.headDim = headDim
        self.interleaved = interleaved
        let half = headDim / 2
        for (ti, table) in tables.enumerated() {
            for pos in 0..<context {
                for i in 0..<half {
                    let angle = Double(pos) * table.inverseFrequencies[i], o = (ti * context + pos) * half + i
                    cos[o] = Float(Foundation.cos(angle) * table.attentionFactor)
                    sin[o] = Float(Foundation.sin(angle) * table.attentionFactor)
                }
            }
        }
    }

    /// Rotates `heads` heads of `vec` for `position` with table `table`.
    func rotate(_ vec: UnsafeMutablePointer<Float>, heads: Int, position: Int, table: Int) {
        let half = headDim / 2, row = (table * context + position) * half
        let cosRow = cos + row, sinRow = sin + row
        for h in 0..<heads {
            let head = vec + h * headDim
            for i in 0..<half {
                let (a, b) = interleaved ? (2 * i, 2 * i + 1) : (i, i + half)
                let x0 = head[a], x1 = head[b]
                head[a] = x0 * cosRow[i] - x1 * sinRow[i]
                head[b] = x0 * sinRow[i] + x1 * cosRow[i]
            }
        }
    }
}
