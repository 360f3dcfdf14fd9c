import Foundation

/// Activation statistics of a float model over calibration text: for every attention and FFN matrix, the
/// mean squared activation of each input column, E[a_j²] — how much an error in column j of the weights
/// costs the layer's output. The q4 quantizer weighs its scale search with them.
public struct Calibration: Sendable {
    /// Which text, and how much of it.
    public let provenance: CalibrationProvenance
    /// [cols] importance of each matrix, by canonical tensor name.
    public let importance: [String: [Float]]

    /// Runs the float model of `checkpoint` over the first `maxTokens` tokens of `text` (windows of `context`
    /// tokens, BOS first) and collects the statistics. The float model is a temporary f32 conversion of the
    /// checkpoint, removed afterwards. `progress(done, total)` is called after each window.
    public static func collect(checkpoint: Checkpoint, text: Data, maxTokens: Int, context: Int = 256, threads: Int? = nil,
                               progress: (Int, Int) -> Void = { _, _ in }) throws(EdgeLMError) -> Calibration {
        guard maxTokens >= 1 else { throw .invalidArgument("--calibration-tokens \(maxTokens): must be at least 1") }
        guard context >= 2 else { throw .invalidArgument("calibration windows need at least 2 tokens") }
        guard let string = String(validating: text, as: UTF8.self) else { throw .invalidInput("the calibration text is not valid UTF-8") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edgelm-calibration-\(UUID().uuidString)").path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .io(path: directory, message: "cannot create a scratch folder for the float model: \(error)")
        }
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let floatPath = directory + "/float.edgelm"
        _ = try Converter.convert(checkpoint, to: floatPath, options: ConversionOptions(type: .f32))
        let window = min(context, checkpoint.config.contextLength)
        let model = try LanguageModel(path: floatPath, threads: threads, keyType: .f32, valueType: .f32, contextLength: window)
        guard let bos = model.tokenizer.bos else { throw .invalidInput("the model has no BOS token to start calibration windows with") }
        let tokens = Array(model.tokenizer.encode(string).prefix(maxTokens))
        guard !tokens.isEmpty else { throw .invalidInput("the calibration text has no tokens") }
        let recorder = SquareSums(config: model.config)
        model.session.observer = recorder
        let per = window - 1, windows = (tokens.count + per - 1) / per
        for w in 0..<windows {
            model.session.reset()
            _ = try model.session.forward([bos] + tokens[(w * per)..<min(tokens.count, (w + 1) * per)])
            progress(w + 1, windows)
        }
        model.session.observer = nil
        var hash = SHA256()
        text.withUnsafeBytes { hash.update($0) }
        return Calibration(provenance: CalibrationProvenance(textSHA256: hash.finalizeHex(), tokens: tokens.count, windows: windows, context: window),
                           importance: recorder.importance())
    }
}

/// Σ a_j² per input column and token counts, accumulated in Double.
private final class SquareSums: ActivationObserver {
    private let config: ModelConfig
    private var sums: [String: [Double]] = [:]
    private var counts: [String: Int] = [:]

    init(config: ModelConfig) { self.config = config }

    func observe(layer: Int, input: LinearInput, values: UnsafePointer<Float>, tokens: Int, width: Int) {
        let key = "\(layer).\(input)"
        // Accumulated in place: no copy of the sums per call.
        sums[key, default: [Double](repeating: 0, count: width)].withUnsafeMutableBufferPointer { s in
            for t in 0..<tokens {
                let row = values + t * width
                for j in 0..<width { s[j] += Double(row[j]) * Double(row[j]) }
            }
        }
        counts[key, default: 0] += tokens
    }

    func importance() -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for l in 0..<config.layers {
            for input in LinearInput.allCases {
                let key = "\(l).\(input)"
                guard let s = sums[key], let n = counts[key], n > 0 else { continue }
                let mean = s.map { Float($0 / Double(n)) }
                for name in input.tensors(layer: l) { out[name] = mean }
            }
        }
        return out
    }
}
