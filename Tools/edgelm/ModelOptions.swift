import ArgumentParser
import EdgeLM
import Foundation

extension KVCacheType: ExpressibleByArgument {}
extension ActivationGranularity: ExpressibleByArgument {}

/// Options shared by the commands that run a model.
struct ModelOptions: ParsableArguments {
    @Option(
        name: .shortAndLong,
        help:
            "The .edgelm model file, or a GGUF (converted once with --type keep into $EDGELM_CACHE, default ~/.cache/edgelm, and reused while it is unchanged)."
    )
    var model: String

    @Option(
        name: [.customShort("t"), .customLong("threads")],
        help: ArgumentHelp("Worker threads (default: physical cores); bench takes a list (1,2).", valueName: "n"))
    var threadList: IntList?

    /// The one thread count given (nil: the default); a list is refused here, since only bench runs several.
    var threads: Int? {
        get throws {
            guard let threadList else { return nil }
            guard threadList.values.count == 1 else { throw EdgeLMError.invalidArgument("-t \(threadList): only bench takes a list of thread counts") }
            return threadList.values[0]
        }
    }

    @Option(name: .long, help: "KV cache type of keys and values: f32, f16 or q8 (int8 with an f16 scale per 32 values).")
    var kvType: KVCacheType = .q8

    @Option(name: .long, help: "Key cache type, overriding --kv-type for keys.")
    var kType: KVCacheType?

    @Option(name: .long, help: "Value cache type, overriding --kv-type for values.")
    var vType: KVCacheType?

    @Option(
        name: [.customShort("c"), .customLong("ctx")],
        help: "Context positions of the KV cache (default: the model's, capped to fit in memory; llama.cpp's -c).")
    var ctx: Int?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "How the integer kernels see activations: block32 (int8, a scale per 32 values, as llama.cpp) or residual (a second int8 pass over what the first rounds away: about 15 bits, 0.6x the speed; quantized weights then compute what their f32 dequantization computes).",
            valueName: "activations"))
    var activations: ActivationGranularity = .block32

    /// Opens the model with these options (a context of `context` positions when --ctx is not given), and
    /// says on stderr when the context differs from the model's.
    /// `threads` overrides -t (bench, running each count of a list).
    func open(verify: Bool = false, context: Int? = nil, quiet: Bool = false, threads: Int? = nil) throws -> LanguageModel {
        if let ctx, ctx < 1 { throw EdgeLMError.invalidArgument("--ctx \(ctx): must be at least 1") }
        let path = try ModelCache.resolve(model) { if !quiet { Terminal.error($0) } }
        let lm = try LanguageModel(
            path: path, threads: try threads ?? self.threads, verify: verify, keyType: kType ?? kvType, valueType: vType ?? kvType,
            contextLength: ctx ?? context, activationGranularity: activations, level: try KernelLevel.selected())
        let trained = lm.config.contextLength, used = lm.session.contextLength
        if !quiet, used > trained {
            Terminal.error("warning: a context of \(used) positions is beyond the model's trained context of \(trained)")
        } else if !quiet, ctx == nil, context == nil, used < trained {
            Terminal.error("note: context capped at \(used) of the model's \(trained) positions so the \(lm.session.kvTypeName) KV cache fits in memory")
        }
        return lm
    }
}

/// A comma-separated list of integers, as llama-bench takes them (`-p 128,512`).
struct IntList: ExpressibleByArgument, CustomStringConvertible, Sendable {
    let values: [Int]

    init(_ values: [Int]) { self.values = values }

    init?(argument: String) {
        let parts = argument.split(separator: ",", omittingEmptySubsequences: false).map { Int($0.trimmingCharacters(in: .whitespaces)) }
        guard !parts.isEmpty, parts.allSatisfy({ $0 != nil }) else { return nil }
        values = parts.map { $0! }
    }

    var description: String { values.map(String.init).joined(separator: ",") }
}
