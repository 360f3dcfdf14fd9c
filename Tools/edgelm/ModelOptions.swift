import ArgumentParser
import EdgeLM

extension KVCacheType: ExpressibleByArgument {}
extension ActivationGranularity: ExpressibleByArgument {}

/// Options shared by the commands that run a model.
struct ModelOptions: ParsableArguments {
    @Option(name: .shortAndLong, help: "The .edgelm model file, or a GGUF (converted once with --type keep into $EDGELM_CACHE, default ~/.cache/edgelm, and reused while it is unchanged).")
    var model: String

    @Option(name: .shortAndLong, help: "Worker threads (default: physical cores).")
    var threads: Int?

    @Option(name: .long, help: "KV cache type of keys and values: f32, f16 or q8 (int8 with an f16 scale per 32 values).")
    var kvType: KVCacheType = .q8

    @Option(name: .long, help: "Key cache type, overriding --kv-type for keys.")
    var kType: KVCacheType?

    @Option(name: .long, help: "Value cache type, overriding --kv-type for values.")
    var vType: KVCacheType?

    @Option(name: [.customShort("c"), .customLong("ctx")], help: "Context positions of the KV cache (default: the model's, capped to fit in memory; llama.cpp's -c).")
    var ctx: Int?

    @Option(name: .long, help: ArgumentHelp("How the integer kernels see activations: block32 (int8, a scale per 32 values, as llama.cpp) or residual (a second int8 pass over what the first rounds away: about 15 bits, 0.6x the speed; quantized weights then compute what their f32 dequantization computes).", valueName: "activations"))
    var activations: ActivationGranularity = .block32

    /// Opens the model with these options (a context of `context` positions when --ctx is not given), and
    /// says on stderr when the context differs from the model's.
    func open(verify: Bool = false, context: Int? = nil, quiet: Bool = false) throws -> LanguageModel {
        if let ctx, ctx < 1 { throw EdgeLMError.invalidArgument("--ctx \(ctx): must be at least 1") }
        let path = try ModelCache.resolve(model) { if !quiet { Terminal.error($0) } }
        let lm = try LanguageModel(path: path, threads: threads, verify: verify, keyType: kType ?? kvType, valueType: vType ?? kvType,
                                   contextLength: ctx ?? context, activationGranularity: activations)
        let trained = lm.config.contextLength, used = lm.session.contextLength
        if !quiet, used > trained {
            Terminal.error("warning: a context of \(used) positions is beyond the model's trained context of \(trained)")
        } else if !quiet, ctx == nil, context == nil, used < trained {
            Terminal.error("note: context capped at \(used) of the model's \(trained) positions so the \(lm.session.kvTypeName) KV cache fits in memory")
        }
        return lm
    }
}
