/// Rewrites a model file with raw payloads, so that a zstd-compressed file can be memory-mapped and used
/// without decoding (and without the heap copy decoding costs).
public enum Unpacker {
    /// Writes `file`'s tensors, decoded, to `outputPath` (atomically; see `ModelWriter`).
    public static func unpack(_ file: ModelFile, to outputPath: String, overwrite: Bool) throws(EdgeLMError) {
        let writer = try ModelWriter(path: outputPath, overwrite: overwrite)
        for entry in file.metadata.tensors {
            let storage = try file.tensor(entry.name)
            try writer.append(
                name: entry.name, shape: entry.shape, scheme: entry.scheme, groupSize: entry.groupSize,
                payload: storage.bytes, zstdLevel: nil)
        }
        var settings = file.metadata.quantization
        settings.compression = .raw
        settings.zstdLevel = nil
        try writer.finish(
            config: file.metadata.config, tokenizer: file.metadata.tokenizer, provenance: file.metadata.provenance,
            quantization: settings)
    }
}
