import CEdgeKernels
import Foundation

/// Activation statistics of a float model over calibration text: for every attention and FFN matrix, the
/// mean squared activation of each input column, E[a_j²] — how much an error in column j of the weights
/// costs the layer's output. The q4 quantizer weighs its scale search with them. With `gptq`, also each
/// input's second moments E[a aᵀ], from which GPTQ rounds the columns with error feedback.
public struct Calibration: Sendable {
    /// Which text, and how much of it.
    public let provenance: CalibrationProvenance
    /// [cols] importance of each matrix, by canonical tensor name.
    public let importance: [String: [Float]]
    /// [cols, cols] E[a aᵀ] of each matrix's input, by canonical tensor name (empty unless collected
    /// for GPTQ; the matrices reading one input share one array).
    public let gram: [String: [Float]]

    /// Statistics collected elsewhere (tests build deliberately broken ones).
    public init(provenance: CalibrationProvenance, importance: [String: [Float]], gram: [String: [Float]] = [:]) {
        self.provenance = provenance
        self.importance = importance
        self.gram = gram
    }

    /// Bytes the second moments of `config` take: one [width, width] Float matrix per layer and input.
    public static func gramBytes(_ config: ModelConfig) -> Int {
        config.layers * 4 * (2 * config.dim * config.dim + config.qDim * config.qDim + config.ffnDim * config.ffnDim)
    }

    /// Runs the float model of `checkpoint` over the first `maxTokens` tokens of `text` (windows of `context`
    /// tokens, BOS first) and collects the statistics. The float model is a temporary f32 conversion of the
    /// checkpoint, removed afterwards. `progress(done, total)` is called after each window.
    /// With `gptq`, also the second moments, refused when they would not fit the memory budget.
    public static func collect(
        checkpoint: Checkpoint, text: Data, maxTokens: Int, context: Int = 256, threads: Int? = nil,
        level: KernelLevel = .detected, gptq: Bool = false, progress: (Int, Int) -> Void = { _, _ in }
    ) throws(EdgeLMError) -> Calibration {
        if gptq, gramBytes(checkpoint.config) > MemoryUsage.budgetBytes / 2 {
            throw .invalidArgument(
                "--gptq needs \(gramBytes(checkpoint.config) >> 20) MiB of activation second moments for this model, more than half the memory budget (\(MemoryUsage.budgetBytes >> 20) MiB)"
            )
        }
        let run = try CalibrationRun(checkpoint: checkpoint, text: text, maxTokens: maxTokens, context: context, threads: threads, level: level)
        defer { run.removeScratch() }
        let model = run.float
        let recorder = ActivationMoments(config: model.config, gram: gptq, level: level)
        model.session.observer = recorder
        for w in 0..<run.windows {
            try model.session.observe(run.window(w), layers: model.config.layers)
            progress(w + 1, run.windows)
        }
        model.session.observer = nil
        return Calibration(
            provenance: run.provenance(method: gptq ? .gptq : .importance),
            importance: recorder.perTensor(recorder.means()), gram: recorder.perTensor(recorder.takeGramMeans()))
    }
}

/// What every calibration pass starts from: the checked text, its first `maxTokens` tokens, windows of
/// `context` tokens with BOS first, and the float model (a temporary f32 conversion of the checkpoint in a
/// scratch folder, which `removeScratch` deletes).
struct CalibrationRun {
    /// The scratch folder.
    let directory: String
    /// The float model.
    let float: LanguageModel
    /// The text's tokens.
    let tokens: [Int]
    /// Tokens per window, BOS included.
    let context: Int
    /// Windows the tokens fill.
    let windows: Int
    /// [BOS] when the model starts prompts with it, else nothing.
    private let prefix: [Int]
    private let textSHA256: String

    init(checkpoint: Checkpoint, text: Data, maxTokens: Int, context: Int, threads: Int?, level: KernelLevel) throws(EdgeLMError) {
        guard maxTokens >= 1 else { throw .invalidArgument("--calibration-tokens \(maxTokens): must be at least 1") }
        guard context >= 2 else { throw .invalidArgument("calibration windows need at least 2 tokens") }
        guard let string = String(validating: text, as: UTF8.self) else { throw .invalidInput("the calibration text is not valid UTF-8") }
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("edgelm-calibration-\(UUID().uuidString)").path
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        } catch {
            throw .io(path: directory, message: "cannot create a scratch folder for the float model: \(error)")
        }
        do throws(EdgeLMError) {
            var floatOptions = ConversionOptions(type: .f32)
            floatOptions.level = level
            _ = try Converter.convert(checkpoint, to: directory + "/float.edgelm", options: floatOptions)
            self.context = min(context, checkpoint.config.contextLength)
            float = try LanguageModel(
                path: directory + "/float.edgelm", threads: threads, keyType: .f32, valueType: .f32, contextLength: self.context, level: level)
            prefix = float.tokenizer.data.addsBOS ? [float.tokenizer.bos!] : []
            tokens = Array(float.tokenizer.encode(string).prefix(maxTokens))
            guard !tokens.isEmpty else { throw .invalidInput("the calibration text has no tokens") }
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
        self.directory = directory
        let per = self.context - prefix.count
        windows = (tokens.count + per - 1) / per
        var hash = SHA256()
        text.withUnsafeBytes { hash.update($0) }
        textSHA256 = hash.finalizeHex()
    }

    /// Window `w`: BOS (when the model adds it), then its share of the tokens.
    func window(_ w: Int) -> [Int] {
        let per = context - prefix.count
        return prefix + tokens[(w * per)..<min(tokens.count, (w + 1) * per)]
    }

    /// The record of this text for a file calibrated by `method`.
    func provenance(method: CalibrationMethod) -> CalibrationProvenance {
        CalibrationProvenance(textSHA256: textSHA256, tokens: tokens.count, windows: windows, context: context, method: method)
    }

    /// Deletes the scratch folder and the float model in it.
    func removeScratch() { try? FileManager.default.removeItem(atPath: directory) }
}

/// Σ a_j² per input column (and, when asked, Σ a aᵀ) and token counts, per layer and input.
private final class ActivationMoments: ActivationObserver {
    private let config: ModelConfig
    private let collectsGram: Bool
    private let level: KernelLevel
    private var sums: [String: [Double]] = [:]
    private var grams: [String: [Float]] = [:]
    private var counts: [String: Int] = [:]

    init(config: ModelConfig, gram: Bool, level: KernelLevel) {
        self.config = config
        collectsGram = gram
        self.level = level
    }

    func observe(layer: Int, input: LinearInput, values: UnsafePointer<Float>, tokens: Int, width: Int) {
        let key = "\(layer).\(input)"
        // Accumulated in place: no copy of the sums per call.
        sums[key, default: [Double](repeating: 0, count: width)].withUnsafeMutableBufferPointer { s in
            for t in 0..<tokens {
                let row = values + t * width
                for j in 0..<width { s[j] += Double(row[j]) * Double(row[j]) }
            }
        }
        if collectsGram {
            // The upper triangle: row i gets a_i times a[i...] for every token of the batch, while the row
            // stays in cache (token-major order streamed the whole matrix once per token). Rows are
            // independent: chunks of 8 go to every core (the early, longer rows are taken first).
            grams[key, default: [Float](repeating: 0, count: width * width)].withUnsafeMutableBufferPointer { g in
                let base = UncheckedSendable(g.baseAddress!), input = UncheckedSendable(values), rows = 8, level = level.rawValue
                DispatchQueue.concurrentPerform(iterations: (width + rows - 1) / rows) { c in
                    edge_gram_rows_f32(
                        level, input.value, nil, Int64(tokens), Int64(width),
                        Int64(c * rows), Int64(min(width, (c + 1) * rows)), base.value)
                }
            }
        }
        counts[key, default: 0] += tokens
    }

    /// E[a_j²] per layer and input.
    func means() -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for (key, s) in sums {
            if let n = counts[key], n > 0 { out[key] = s.map { Float($0 / Double(n)) } }
        }
        return out
    }

    /// E[a aᵀ] per layer and input, both triangles filled. Turns the sums into the means in place and
    /// hands them over (a copy would double the largest allocation of a GPTQ calibration).
    func takeGramMeans() -> [String: [Float]] {
        for key in Array(grams.keys) {
            guard let n = counts[key], n > 0 else {
                grams[key] = nil
                continue
            }
            let inverse = 1 / Float(n)
            grams[key]!.withUnsafeMutableBufferPointer { m in
                let width = Int(Double(m.count).squareRoot())
                for i in 0..<width {
                    for j in i..<width {
                        m[i * width + j] *= inverse
                        m[j * width + i] = m[i * width + j]
                    }
                }
            }
        }
        defer { grams = [:] }
        return grams
    }

    /// Statistics per layer and input, keyed by the canonical names of the tensors that read them.
    func perTensor(_ byInput: [String: [Float]]) -> [String: [Float]] {
        var out: [String: [Float]] = [:]
        for l in 0..<config.layers {
            for input in LinearInput.allCases {
                guard let v = byInput["\(l).\(input)"] else { continue }
                for name in input.tensors(layer: l) { out[name] = v }
            }
        }
        return out
    }
}

/// The input of a group of linear layers, as `ActivationObserver` sees it.
public enum LinearInput: Sendable, CaseIterable {
    /// The normed residual entering attn_q, attn_k and attn_v: [tokens, dim].
    case attention
    /// The attention output entering attn_output: [tokens, qDim].
    case attentionOutput
    /// The normed residual entering ffn_gate and ffn_up: [tokens, dim].
    case ffn
    /// The gated hidden state entering ffn_down: [tokens, ffnDim].
    case ffnDown

    /// The canonical tensors of layer `l` that read this input.
    public func tensors(layer l: Int) -> [String] {
        let p = "blk.\(l)."
        switch self {
        case .attention: return [p + "attn_q", p + "attn_k", p + "attn_v"]
        case .attentionOutput: return [p + "attn_output"]
        case .ffn: return [p + "ffn_gate", p + "ffn_up"]
        case .ffnDown: return [p + "ffn_down"]
        }
    }
}

/// Sees the input of every linear layer during a forward pass (calibration statistics).
public protocol ActivationObserver: AnyObject {
    /// `values` is [tokens, width], row-major, valid only during the call.
    func observe(layer: Int, input: LinearInput, values: UnsafePointer<Float>, tokens: Int, width: Int)
}
