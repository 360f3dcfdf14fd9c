import Foundation
import Testing
@testable import EdgeLM

/// Replays every committed fuzzing crasher (Fuzz/crashers/<reader>/) through its reader.
@Suite struct FuzzRegressionTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("Fuzz/crashers")

    @Test(arguments: UntrustedInput.allCases)
    func crashersAreRejectedCleanly(reader: UntrustedInput) throws {
        let dir = Self.root.appendingPathComponent(reader.rawValue)
        let files = (try? FileManager.default.contentsOfDirectory(atPath: dir.path)) ?? []
        for name in files {
            let bytes = Array(try Data(contentsOf: dir.appendingPathComponent(name)))
            // Reaching the next line at all is the test: the reader returned or threw instead of trapping.
            let outcome: String
            do {
                try withBytes(of: bytes) { (b) throws(EdgeLMError) in try reader.parse(b) }
                outcome = "accepted"
            } catch {
                outcome = error.description
            }
            #expect(!outcome.isEmpty, "\(reader) \(name)")
        }
    }

    /// A small file whose zstd frames claim 200+ GiB of decoded tensors is rejected before anything is decoded.
    @Test func zstdBombIsRejectedBeforeDecoding() throws {
        let config = ModelConfig(
            dim: 65_536, layers: 1, heads: 1_024, kvHeads: 1_024, ffnDim: 1, vocabSize: 300, contextLength: 16,
            ropeLayout: .interleaved, normEpsilon: 1e-5, tiedOutput: true)
        var entries: [TensorEntry] = []
        var offset = 0
        for (name, shape) in config.tensorShapes {
            let layout = try TensorLayout(shape: shape, scheme: .f32, groupSize: 0)
            let chunkBytes = 1 << 30
            let frames = (layout.byteCount + chunkBytes - 1) / chunkBytes
            entries.append(
                TensorEntry(
                    name: name, shape: shape, scheme: .f32, groupSize: 0, offset: offset, length: frames,
                    encoding: .zstd, chunkBytes: chunkBytes, chunks: [Int](repeating: 1, count: frames),
                    checksum: "0000000000000000", rawChecksum: nil))
            offset += frames
        }
        let meta = ModelMetadata(
            config: config, tokenizer: TinyModel.tokenizer,
            provenance: Provenance(sourceFile: "bomb", sourceSHA256: "", sourceFormat: "", converterVersion: "", created: ""),
            quantization: QuantizationSettings(type: .f32, groupSize: 0, embeddingType: .f32, compression: .zstd, zstdLevel: 1),
            tensors: entries)
        let json = Array(try JSONEncoder().encode(meta))
        let header = FileHeader(
            version: 1, dataOffset: 4096, dataLength: offset, metadataOffset: 4096 + offset,
            metadataLength: json.count, metadataChecksum: json.withUnsafeBytes { XXH64.hash($0) })
        let bytes = header.encoded() + [UInt8](repeating: 0, count: 4096 - 64 + offset) + json
        #expect(bytes.count < 100_000)
        #expect { try withBytes(of: bytes) { (b) throws(EdgeLMError) in try UntrustedInput.edgelm.parse(b) } } throws: {
            ($0 as? EdgeLMError)?.description.contains("zstd payloads decode to") ?? false
        }
    }
}
