import CEdgeKernels
import Foundation

/// GPTQ in forward order with error compensation (`edgelm quantize --gptq --sequential`). The matrices that
/// read one input — a layer's q, k and v; its output projection; gate and up; down — are quantized in turn,
/// each from the inputs x_q of a model whose earlier matrices are already quantized, and fitted to what the
/// float model computes from its own inputs x_f: W is first replaced by the float matrix that best maps
/// x_q to W x_f over the calibration text, pulled toward W itself by a ridge λ (`mapDampening`),
///
///     W* = W · (C + λI) · (H + λI)⁻¹,  C = E[x_f x_qᵀ],  H = E[x_q x_qᵀ],
///
/// and W* is rounded by GPTQ with H. Without the ridge ‖W x_f − Ŵ x_q‖² = ‖(W* − Ŵ) x_q‖² + const, so each matrix's rounding
/// also makes up for the error its inputs already carry. The layout is the ordinary q4, q4a, q4n or q8 one.
///
/// Measured on stories260K q4 (second-half KLD, 16,384 calibration tokens): 0.0413 against 0.0539 for
/// GPTQ from the float model's moments. Cost: per layer one pass of the float model over the calibration text,
/// and per stage (four per layer) one conversion of the model and one pass of it, each pass only as far as the
/// layer; so it is meant for small models.
public enum SequentialGPTQ {
    /// Ridge λ, as a fraction of H's mean diagonal, of the map M = (C + λI)(H + λI)⁻¹: the least-squares map
    /// pulled toward the identity (no compensation) rather than toward zero, so that a stage whose inputs
    /// carry no error (C = H) gets M = I and plain GPTQ. Chosen on stories260K q4 (16,384 / 65,536 calibration
    /// tokens, when the moments saw the last batch of each window only): toward the identity with 1% 0.0432 / 0.0394,
    /// with 0.1% 0.0443 / 0.0411; toward zero (C (H + λI)⁻¹) with 1% 0.0450 / 0.0419, with 0.1% 0.0469 / 0.0390.
    static let mapDampening = 0.01

    /// Converts `checkpoint` as `Converter.convert` does, with every attention and FFN matrix rounded by
    /// compensated sequential GPTQ over the first `maxTokens` tokens of `text` (windows of `context`).
    /// `progress(done, total)` follows the stages; the calibration is recorded with method `.sequentialGPTQ`.
    public static func convert(
        _ checkpoint: Checkpoint, to outputPath: String, options: ConversionOptions, text: Data,
        maxTokens: Int, context: Int = 256, threads: Int? = nil,
        progress: (Int, Int) -> Void = { _, _ in },
        conversionProgress: (ConversionProgress) -> Void = { _ in }
    ) throws(EdgeLMError) -> ConversionReport {
        try convert(
            checkpoint, to: outputPath, options: options, text: text, maxTokens: maxTokens, context: context, threads: threads,
            progress: progress, conversionProgress: conversionProgress, adjust: { _, _, _ in })
    }

    /// `convert` with `adjust(h, c, width)` applied to each stage's E[x_q x_qᵀ] and E[x_f x_qᵀ] (tests break them).
    static func convert(
        _ checkpoint: Checkpoint, to outputPath: String, options: ConversionOptions, text: Data,
        maxTokens: Int, context: Int, threads: Int?, progress: (Int, Int) -> Void,
        conversionProgress: (ConversionProgress) -> Void,
        adjust: (inout [Float], inout [Float], Int) -> Void
    ) throws(EdgeLMError) -> ConversionReport {
        guard options.type.isFittable else { throw .invalidArgument("sequential GPTQ rounds q4, q4a, q4n or q8 matrices, not \(options.type.rawValue)") }
        let config = checkpoint.config
        let run = try CalibrationRun(checkpoint: checkpoint, text: text, maxTokens: maxTokens, context: context, threads: threads, level: options.level)
        defer { run.removeScratch() }
        let partialPath = run.directory + "/partial.edgelm"
        let matrices = Set(config.matrixNames)
        // Input groups a --tensor-type rule keeps float are left as they are.
        let stages = (0..<config.layers).flatMap { l in LinearInput.allCases.map { (l, $0) } }.filter { layer, input in
            input.tensors(layer: layer).contains { matrices.contains($0) && options.plan(for: $0).scheme.isFittable }
        }
        let level = options.level
        // Payloads of the matrices done so far; every other matrix stays f32 in the partial models.
        var done: [String: [UInt8]] = [:]
        var float = InputCapture(layer: -1, inputs: [])
        for (step, (layer, input)) in stages.enumerated() {
            if float.layer != layer {
                // The float model's inputs of this layer's matrices, every window, in one pass as far as the layer.
                float = InputCapture(layer: layer, inputs: Set(LinearInput.allCases))
                try float.run(run.float, run: run)
            }
            let quantized = try partialModel(checkpoint, done: done, options: options, path: partialPath, threads: threads, context: run.context)
            let moments = CrossMoments(float: float, input: input, level: level)
            let capture = InputCapture(layer: layer, inputs: [input])
            try capture.run(quantized, run: run) { w in moments.accumulate(window: w, quantized: capture) }
            var (h, c) = moments.means()
            let width = moments.width
            adjust(&h, &c, width)
            let map = try compensationMap(c, gram: h, cols: width, level: level)
            for name in input.tensors(layer: layer) where matrices.contains(name) {
                guard let source = checkpoint.tensors[name], let shape = config.tensorShapes.first(where: { $0.name == name })?.shape else {
                    throw .missingTensor(path: checkpoint.path, tensor: name)
                }
                let (scheme, groupSize) = options.plan(for: name)
                let layout = try TensorLayout(shape: shape, scheme: scheme, groupSize: groupSize)
                let target = compensated(try source.floats(path: checkpoint.path), rows: layout.rows, cols: width, map: map, level: level)
                done[name] = try GPTQ.encode(target, layout: layout, gram: h, level: level)
            }
            progress(step + 1, stages.count)
        }
        var final = options
        final.calibration = Calibration(provenance: run.provenance(method: .sequentialGPTQ), importance: [:])
        return try Converter.convert(
            checkpoint, to: outputPath, options: final,
            encoder: { (name, values, layout) in
                done[name] ?? Quantizer.encode(values, layout: layout, level: level)
            }, progress: conversionProgress)
    }

    /// A model of `checkpoint` whose matrices in `done` carry those payloads, the others f32 (a scratch file at `path`:
    /// raw payloads, no error report, no calibration record).
    private static func partialModel(
        _ checkpoint: Checkpoint, done: [String: [UInt8]], options: ConversionOptions, path: String,
        threads: Int?, context: Int
    ) throws(EdgeLMError) -> LanguageModel {
        var partial = options
        partial.overwrite = true
        partial.calibration = nil
        partial.zstdLevel = nil
        partial.measureError = false
        partial.tensorTypes =
            try checkpoint.config.matrixNames.filter { done[$0] == nil }.sorted().map { (name) throws(EdgeLMError) in
                try TensorTypeRule(pattern: name, scheme: .f32)
            } + options.tensorTypes
        let level = options.level
        _ = try Converter.convert(
            checkpoint, to: path, options: partial,
            encoder: { (name, values, layout) in
                done[name] ?? Quantizer.encode(values, layout: layout, level: level)
            }, progress: { _ in })
        return try LanguageModel(path: path, threads: threads, keyType: .f32, valueType: .f32, contextLength: context, level: level)
    }

    /// M = (C + λI)(H + λI)⁻¹ ([cols, cols]), λ from `mapDampening`: row i of M solves (H + λI) mᵢ = cᵢ + λeᵢ
    /// (H is symmetric).
    static func compensationMap(_ c: [Float], gram: [Float], cols n: Int, level: KernelLevel) throws(EdgeLMError) -> [Double] {
        // Inputs the text never reached get a unit diagonal in both, as GPTQ gives them (their M row is eᵢ).
        var h = gram.map(Double.init), shifted = c.map(Double.init)
        for i in 0..<n where h[i * n + i] <= 0 {
            h[i * n + i] = 1
            shifted[i * n + i] += 1
        }
        let mean = (0..<n).reduce(0.0) { $0 + h[$1 * n + $1] } / Double(n)
        for i in 0..<n {
            h[i * n + i] += mapDampening * mean
            shifted[i * n + i] += mapDampening * mean
        }
        let target = shifted
        guard let l = GPTQ.cholesky(h, n, level: level) else {
            throw .invalidInput("the partly quantized model's input moments are not positive definite even after \(mapDampening * 100)% dampening")
        }
        var m = [Double](repeating: 0, count: n * n)
        let lt = (0..<(n * n)).map { l[($0 % n) * n + $0 / n] }
        m.withUnsafeMutableBufferPointer { mp in
            l.withUnsafeBufferPointer { lp in
                lt.withUnsafeBufferPointer { tp in
                    let out = UncheckedSendable(mp.baseAddress!), lower = UncheckedSendable(lp.baseAddress!), upper = UncheckedSendable(tp.baseAddress!)
                    DispatchQueue.concurrentPerform(iterations: n) { i in
                        // L y = cᵢ, then Lᵀ mᵢ = y in place (row a of Lᵀ is column a of L: `upper`).
                        let row = out.value + i * n
                        for a in 0..<n { row[a] = (target[i * n + a] - GPTQ.dot(lower.value + a * n, row, a, level: level)) / lower.value[a * n + a] }
                        for a in stride(from: n - 1, through: 0, by: -1) {
                            row[a] = (row[a] - GPTQ.dot(upper.value + a * n + a + 1, row + a + 1, n - a - 1, level: level)) / lower.value[a * n + a]
                        }
                    }
                }
            }
        }
        return m
    }

    /// W · M for W [rows, cols] row-major.
    static func compensated(_ w: [Float], rows: Int, cols n: Int, map m: [Double], level: KernelLevel) -> [Float] {
        var out = [Float](repeating: 0, count: rows * n)
        out.withUnsafeMutableBufferPointer { o in
            let dst = UncheckedSendable(o.baseAddress!)
            m.withUnsafeBufferPointer { mp in
                let map = UncheckedSendable(mp.baseAddress!)
                DispatchQueue.concurrentPerform(iterations: rows) { r in
                    var acc = [Double](repeating: 0, count: n)
                    acc.withUnsafeMutableBufferPointer { a in
                        for k in 0..<n where w[r * n + k] != 0 {
                            edge_sub_scaled_f64(level.rawValue, a.baseAddress!, map.value + k * n, -Double(w[r * n + k]), Int64(n))
                        }
                    }
                    for j in 0..<n { dst.value[r * n + j] = Float(acc[j]) }
                }
            }
        }
        return out
    }
}

/// Copies of some inputs of one layer's matrices, per calibration window, as a model's forward pass (stopped after
/// that layer) sees them: every batch of a window in order.
private final class InputCapture: ActivationObserver {
    let layer: Int
    private let inputs: Set<LinearInput>
    /// [tokens, width] per input and window (only the current window when `run` is given a consumer).
    private(set) var values: [LinearInput: [Int: [Float]]] = [:]
    private(set) var widths: [LinearInput: Int] = [:]
    private var window = 0

    init(layer: Int, inputs: Set<LinearInput>) {
        self.layer = layer
        self.inputs = inputs
    }

    /// Captures every window of `run` through `model`; with `consume`, each window is handed over and then dropped.
    func run(_ model: LanguageModel, run: CalibrationRun, consume: ((Int) -> Void)? = nil) throws(EdgeLMError) {
        model.session.observer = self
        defer { model.session.observer = nil }
        for w in 0..<run.windows {
            window = w
            try model.session.observe(run.window(w), layers: layer + 1)
            if let consume {
                consume(w)
                for input in inputs { values[input]?[w] = nil }
            }
        }
    }

    func observe(layer: Int, input: LinearInput, values: UnsafePointer<Float>, tokens: Int, width: Int) {
        guard layer == self.layer, inputs.contains(input) else { return }
        widths[input] = width
        self.values[input, default: [:]][window, default: []].append(contentsOf: UnsafeBufferPointer(start: values, count: tokens * width))
    }
}

/// The moments of one layer input between the float model and the partly quantized one: Σ x_q x_qᵀ and
/// Σ x_f x_qᵀ over the windows.
private final class CrossMoments {
    private let float: InputCapture
    private let input: LinearInput
    let width: Int
    private var count = 0
    /// One window's sums (f32, as the kernel adds them; allocated once, cleared per window), then the running
    /// totals in double.
    private var windowH: [Float]
    private var windowC: [Float]
    private var h: [Double]
    private var c: [Double]
    private let level: KernelLevel

    init(float: InputCapture, input: LinearInput, level: KernelLevel) {
        self.float = float
        self.input = input
        self.level = level
        width = float.widths[input] ?? 0
        h = [Double](repeating: 0, count: width * width)
        c = h
        windowH = [Float](repeating: 0, count: width * width)
        windowC = windowH
    }

    /// Adds window `w`, as the float model saw it and as `quantized` captured it.
    func accumulate(window w: Int, quantized: InputCapture) {
        let n = width, xfWindow = float.values[input]?[w] ?? [], xqWindow = quantized.values[input]?[w] ?? []
        precondition(xqWindow.count == xfWindow.count, "both models see the same windows")
        windowH.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        windowC.withUnsafeMutableBufferPointer { $0.update(repeating: 0) }
        let tokens = xqWindow.count / n, rows = 8, level = level.rawValue
        xfWindow.withUnsafeBufferPointer { xf in
            xqWindow.withUnsafeBufferPointer { xq in
                windowH.withUnsafeMutableBufferPointer { hp in
                    windowC.withUnsafeMutableBufferPointer { cp in
                        let f = UncheckedSendable(xf.baseAddress!), q = UncheckedSendable(xq.baseAddress!)
                        let hb = UncheckedSendable(hp.baseAddress!), cb = UncheckedSendable(cp.baseAddress!)
                        DispatchQueue.concurrentPerform(iterations: (n + rows - 1) / rows) { chunk in
                            let r0 = Int64(chunk * rows), r1 = Int64(min(n, (chunk + 1) * rows))
                            edge_gram_rows_f32(level, q.value, nil, Int64(tokens), Int64(n), r0, r1, hb.value)
                            edge_gram_rows_f32(level, f.value, q.value, Int64(tokens), Int64(n), r0, r1, cb.value)
                        }
                    }
                }
            }
        }
        for i in 0..<(n * n) {
            h[i] += Double(windowH[i])
            c[i] += Double(windowC[i])
        }
        count += tokens
    }

    /// E[x_q x_qᵀ] (both triangles) and E[x_f x_qᵀ].
    func means() -> (h: [Float], c: [Float]) {
        let n = width, inverse = 1 / Double(max(1, count))
        var hm = [Float](repeating: 0, count: n * n)
        for i in 0..<n {
            for j in i..<n {
                hm[i * n + j] = Float(h[i * n + j] * inverse)
                hm[j * n + i] = hm[i * n + j]
            }
        }
        return (hm, c.map { Float($0 * inverse) })
    }
}
