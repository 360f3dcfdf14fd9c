import CEdgeKernels
import Foundation
import Testing
@testable import EdgeLM

@Suite struct FormatTests {
    /// Converts the tiny model to `scheme` with `zstd` and returns the path.
    func tinyFile(_ dir: TemporaryDirectory, scheme: TensorScheme, groupSize: Int? = nil, zstd: Int? = nil) throws -> String {
        let src = dir.file("tiny.gguf")
        if !FileManager.default.fileExists(atPath: src) { try TinyModel.gguf().write(to: src) }
        let out = dir.file("tiny-\(scheme)-\(groupSize ?? -1)-\(zstd ?? 0).edgelm")
        let checkpoint = try Checkpoint.open(path: src, tokenizerPath: nil)
        _ = try Converter.convert(checkpoint, to: out, options: ConversionOptions(type: scheme, groupSize: groupSize, zstdLevel: zstd))
        return out
    }

    @Test(arguments: [TensorScheme.f32, .f16, .q8, .q4], [nil, 3])
    func roundTripEverySchemeAndEncoding(scheme: TensorScheme, zstd: Int?) throws {
        let dir = TemporaryDirectory()
        let path = try tinyFile(dir, scheme: scheme, zstd: zstd)
        let file = try ModelFile(path: path, verify: true)
        #expect(file.metadata.config == TinyModel.config)
        #expect(file.metadata.tokenizer == TinyModel.tokenizer)
        #expect(file.header.dataOffset % 4096 == 0)
        let checkpoint = try Checkpoint.open(path: dir.file("tiny.gguf"), tokenizerPath: nil)
        let options = ConversionOptions(type: scheme)
        for entry in file.metadata.tensors {
            #expect(entry.encoding == (zstd == nil ? .raw : .zstd))
            if entry.encoding == .raw { #expect(entry.offset % 64 == 0) }
            let (expectedScheme, groupSize) = options.plan(for: entry.name)
            #expect(entry.scheme == expectedScheme)
            let layout = try TensorLayout(shape: entry.shape, scheme: expectedScheme, groupSize: groupSize)
            let source = try checkpoint.tensors[entry.name]!.floats(path: "")
            let expected = Quantizer.encode(source, layout: layout)
            let stored = try file.tensor(entry.name)
            #expect(Array(stored.bytes) == expected, "payload of \(entry.name)")
            #expect(stored.isMapped == (zstd == nil))
        }
    }

    @Test func zstdShrinksAndRecordsChunks() throws {
        let dir = TemporaryDirectory()
        let raw = try ModelFile(path: try tinyFile(dir, scheme: .f32))
        let packed = try ModelFile(path: try tinyFile(dir, scheme: .f32, zstd: 19))
        // Norm weights are all ones: they compress to almost nothing.
        let norm = try packed.entry("output_norm")
        #expect(norm.length < 64)
        #expect(norm.chunks == [norm.length])
        #expect(packed.storedPayloadBytes < raw.storedPayloadBytes)
    }

    @Test func unpackGivesTheRawFile() throws {
        let dir = TemporaryDirectory()
        let packed = try tinyFile(dir, scheme: .q4, zstd: 9)
        let raw = try tinyFile(dir, scheme: .q4)
        try Unpacker.unpack(try ModelFile(path: packed), to: dir.file("unpacked.edgelm"), overwrite: false)
        let unpacked = try ModelFile(path: dir.file("unpacked.edgelm"), verify: true)
        let reference = try ModelFile(path: raw)
        #expect(unpacked.metadata.quantization.compression == .raw)
        for entry in reference.metadata.tensors {
            let u = try unpacked.entry(entry.name)
            #expect(u.encoding == .raw && u.checksum == entry.checksum && u.offset == entry.offset)
            #expect(try unpacked.tensor(entry.name).isMapped)
        }
        #expect(throws: EdgeLMError.self) { try Unpacker.unpack(try ModelFile(path: packed), to: dir.file("unpacked.edgelm"), overwrite: false) }
    }

    @Test func layoutSizesAreExact() throws {
        let q4 = try TensorLayout(shape: [64, 172], scheme: .q4, groupSize: 32)
        #expect(q4.blocksPerRow == 6 && q4.groupsPerRow == 6)
        #expect(q4.codeBytes == 64 * 6 * 16)
        #expect(q4.byteCount == q4.scalesOffset + 64 * 6 * 2)
        let q8 = try TensorLayout(shape: [10, 64], scheme: .q8, groupSize: 0)
        #expect(q8.groupsPerRow == 1 && q8.byteCount == 640 + 20)
        #expect(abs(q8.bitsPerWeight - 8.25) < 1e-9)
        #expect(throws: EdgeLMError.self) { try TensorLayout(shape: [4, 64], scheme: .q8, groupSize: 48) }
        #expect(throws: EdgeLMError.self) { try TensorLayout(shape: [0, 64], scheme: .f32, groupSize: 0) }
    }

    @Test func hashesMatchPublishedVectors() {
        #expect(Array("abc".utf8).withUnsafeBytes { SHA256.hex($0) } == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        let long = [UInt8](repeating: 0x61, count: 1_000_000)
        #expect(long.withUnsafeBytes { SHA256.hex($0) } == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        #expect([UInt8]().withUnsafeBytes { XXH64.hash($0) } == 0xEF46_DB37_51D8_E999)
        #expect(Array("abc".utf8).withUnsafeBytes { XXH64.hash($0) } == 0x44BC_2CF5_AD77_0999)
    }

    /// The SHA-instruction path (where the CPU has one) equals the Swift reference for every length and split.
    @Test func acceleratedSHA256MatchesReference() {
        var rng = SystemRandomNumberGenerator()
        let data = (0..<70_000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        for n in Array(0...260) + [4_095, 4_096, 65_537, 70_000] {
            data.withUnsafeBytes { all in
                let part = UnsafeRawBufferPointer(rebasing: all[0..<n])
                var fast = SHA256(), slow = SHA256(accelerated: false)
                let cut = n / 3
                fast.update(UnsafeRawBufferPointer(rebasing: part[0..<cut]))
                fast.update(UnsafeRawBufferPointer(rebasing: part[cut...]))
                slow.update(part)
                #expect(fast.finalizeHex() == slow.finalizeHex(), "length \(n)")
            }
        }
    }

    /// Half-to-float conversion at every kernel level this CPU has (F16C on x86) is exact for every half, as
    /// the Swift reference.
    @Test(arguments: KernelLevel.allCases.filter(\.isSupported))
    func halfConversionIsExactForEveryValue(level: KernelLevel) {
        let halves = (0...UInt16.max).map { $0 }
        var out = [Float](repeating: 0, count: halves.count)
        halves.withUnsafeBufferPointer { src in
            out.withUnsafeMutableBufferPointer { edge_f16_to_f32(level.rawValue, src.baseAddress!, $0.baseAddress!, Int64(src.count)) }
        }
        for (h, f) in zip(halves, out) {
            let expected = HalfFloat.toFloat(h)
            #expect(f.bitPattern == expected.bitPattern || (f.isNaN && expected.isNaN), "\(level) half \(h)")
        }
    }

    @Test func halfConversionRoundsToNearestEven() {
        for bits in stride(from: 0, through: 0xFFFF, by: 1) where bits & 0x7C00 != 0x7C00 {
            let h = UInt16(bits)
            #expect(HalfFloat.fromFloat(HalfFloat.toFloat(h)) == h)
        }
        #expect(HalfFloat.fromFloat(1 + 1.0 / 2048) == 0x3C00)  // tie -> even
        #expect(HalfFloat.fromFloat(1 + 3.0 / 2048) == 0x3C02)  // tie -> even (up)
        #expect(HalfFloat.fromFloat(70000) == 0x7C00)
        #expect(HalfFloat.toFloat(0x0001) == Float(sign: .plus, exponent: -24, significand: 1))
    }
}

/// Every way a damaged file must be rejected, each with its own error.
@Suite struct CorruptFileTests {
    let dir = TemporaryDirectory()

    func validFile(zstd: Int? = nil) throws -> (path: String, bytes: [UInt8]) {
        let src = dir.file("tiny.gguf")
        try TinyModel.gguf().write(to: src)
        let path = dir.file("valid-\(zstd ?? 0).edgelm")
        _ = try Converter.convert(
            try Checkpoint.open(path: src, tokenizerPath: nil), to: path,
            options: ConversionOptions(type: .q8, zstdLevel: zstd))
        return (path, Array(try Data(contentsOf: URL(fileURLWithPath: path))))
    }

    func write(_ bytes: [UInt8], _ name: String) throws -> String {
        let p = dir.file(name)
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    /// Rewrites the metadata JSON with `edit` and fixes up the header so only the edit is wrong.
    func withMetadata(_ bytes: [UInt8], _ edit: (inout [String: Any]) -> Void) throws -> [UInt8] {
        let header = try bytes.withUnsafeBytes { try FileHeader.decode($0, path: "x") }
        var json = try JSONSerialization.jsonObject(with: Data(bytes[header.metadataOffset...])) as! [String: Any]
        edit(&json)
        let meta = Array(try JSONSerialization.data(withJSONObject: json))
        var h = header
        h.metadataLength = meta.count
        h.metadataChecksum = meta.withUnsafeBytes { XXH64.hash($0) }
        return h.encoded() + bytes[64..<header.metadataOffset] + meta
    }

    func tensors(_ json: inout [String: Any], _ edit: (inout [[String: Any]]) -> Void) {
        var t = json["tensors"] as! [[String: Any]]
        edit(&t)
        json["tensors"] = t
    }

    @Test func badMagic() throws {
        var b = try validFile().bytes
        b[0] = UInt8(ascii: "X")
        #expect { try ModelFile(path: try write(b, "m")) } throws: { ($0 as? EdgeLMError).map { if case .badMagic = $0 { true } else { false } } ?? false }
    }

    @Test func unknownVersion() throws {
        var b = try validFile().bytes
        b[8] = 9
        #expect(throws: EdgeLMError.unsupportedVersion(path: try write(b, "v"), version: 9, supported: "1")) {
            try ModelFile(path: dir.file("v"))
        }
    }

    @Test func truncatedHeader() throws {
        let b = Array(try validFile().bytes.prefix(40))
        #expect { try ModelFile(path: try write(b, "t")) } throws: {
            ($0 as? EdgeLMError).map { if case .truncated(_, "header", _, _, _) = $0 { true } else { false } } ?? false
        }
    }

    @Test func truncatedFile() throws {
        let b = try validFile().bytes
        #expect { try ModelFile(path: try write(Array(b.dropLast(100)), "tf")) } throws: {
            ($0 as? EdgeLMError).map { if case .truncated = $0 { true } else { false } } ?? false
        }
    }

    @Test func headerChecksum() throws {
        var b = try validFile().bytes
        b[20] ^= 1
        #expect { try ModelFile(path: try write(b, "hc")) } throws: {
            ($0 as? EdgeLMError).map { if case .checksumMismatch(_, "<header>", _, _) = $0 { true } else { false } } ?? false
        }
    }

    @Test func offsetPastEnd() throws {
        let b = try withMetadata(try validFile().bytes) { j in tensors(&j) { $0[3]["offset"] = 1 << 40 } }
        #expect { try ModelFile(path: try write(b, "o")) } throws: {
            ($0 as? EdgeLMError).map { if case .tensorOutOfBounds = $0 { true } else { false } } ?? false
        }
    }

    @Test func overlappingTensors() throws {
        let b = try withMetadata(try validFile().bytes) { j in tensors(&j) { $0[2]["offset"] = $0[0]["offset"] } }
        #expect { try ModelFile(path: try write(b, "ov")) } throws: {
            ($0 as? EdgeLMError).map { if case .tensorsOverlap = $0 { true } else { false } } ?? false
        }
    }

    @Test func shapeMismatch() throws {
        let b = try withMetadata(try validFile().bytes) { j in tensors(&j) { $0[2]["shape"] = [64, 32] } }
        #expect { try ModelFile(path: try write(b, "s")) } throws: {
            ($0 as? EdgeLMError).map { if case .shapeMismatch(_, "blk.0.attn_q", [64, 64], [64, 32]) = $0 { true } else { false } } ?? false
        }
    }

    @Test func lengthMismatch() throws {
        let b = try withMetadata(try validFile().bytes) { j in tensors(&j) { $0[2]["length"] = ($0[2]["length"] as! Int) - 64 } }
        #expect { try ModelFile(path: try write(b, "l")) } throws: {
            ($0 as? EdgeLMError).map { if case .tensorSizeMismatch(_, "blk.0.attn_q", _, _) = $0 { true } else { false } } ?? false
        }
    }

    @Test func missingTensor() throws {
        let b = try withMetadata(try validFile().bytes) { j in tensors(&j) { $0.remove(at: 5) } }
        #expect { try ModelFile(path: try write(b, "mt")) } throws: {
            ($0 as? EdgeLMError).map { if case .missingTensor = $0 { true } else { false } } ?? false
        }
    }

    @Test func badTensorChecksumNamesTheTensor() throws {
        let (path, bytes) = try validFile()
        let file = try ModelFile(path: path)
        let entry = try file.entry("blk.1.ffn_up")
        var b = bytes
        b[file.header.dataOffset + entry.offset + 17] ^= 0x10
        let corrupt = try write(b, "c")
        _ = try ModelFile(path: corrupt)  // opening is O(metadata): payloads are checked on demand
        #expect { try ModelFile(path: corrupt, verify: true) } throws: {
            ($0 as? EdgeLMError).map { if case .checksumMismatch(_, "blk.1.ffn_up", _, _) = $0 { true } else { false } } ?? false
        }
    }

    @Test func corruptZstdFrame() throws {
        let (path, bytes) = try validFile(zstd: 3)
        let file = try ModelFile(path: path)
        let entry = try file.entry("blk.0.ffn_gate")
        var b = bytes
        for i in 0..<4 { b[file.header.dataOffset + entry.offset + i] = 0 }  // destroy the frame magic
        let corrupt = try write(b, "z")
        #expect { try ModelFile(path: corrupt).tensor("blk.0.ffn_gate") } throws: {
            ($0 as? EdgeLMError).map { if case .corruptCompression(_, "blk.0.ffn_gate", _) = $0 { true } else { false } } ?? false
        }
    }

    @Test func metadataGarbage() throws {
        let (_, bytes) = try validFile()
        let header = try bytes.withUnsafeBytes { try FileHeader.decode($0, path: "x") }
        var b = bytes
        b[header.metadataOffset + 1] = UInt8(ascii: "#")
        #expect { try ModelFile(path: try write(b, "g")) } throws: {
            ($0 as? EdgeLMError).map { if case .checksumMismatch(_, "<metadata>", _, _) = $0 { true } else { false } } ?? false
        }
    }

    @Test func absurdConfig() throws {
        let b = try withMetadata(try validFile().bytes) { j in
            var c = j["config"] as! [String: Any]
            c["layers"] = 1 << 40
            j["config"] = c
        }
        #expect { try ModelFile(path: try write(b, "a")) } throws: {
            ($0 as? EdgeLMError).map { if case .invalidField(_, "layers", _) = $0 { true } else { false } } ?? false
        }
    }
}
