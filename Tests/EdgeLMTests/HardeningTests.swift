import Foundation
import Testing
@testable import EdgeLM

/// The attack classes that have hit widely used GGUF parsers, each fed to the reader.
@Suite struct GGUFAttackTests {
    func expectRejected(_ bytes: [UInt8], _ check: (EdgeLMError) -> Bool = { _ in true }, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(sourceLocation: sourceLocation) {
            try withBytes(of: bytes) { (b) throws(EdgeLMError) in try UntrustedInput.gguf.parse(b) }
        } throws: { ($0 as? EdgeLMError).map(check) ?? false }
    }

    func field(_ name: String) -> (EdgeLMError) -> Bool {
        { if case let .invalidField(_, f, _) = $0 { f.contains(name) } else { false } }
    }

    @Test func elementCountOverflowInDims() {
        var g = HostileGGUF(tensors: 1, keyValues: 0)
        g.tensor("token_embd.weight", dims: [1 << 32, 1 << 32, 1 << 2])
        expectRejected(g.bytes, field("dims"))
    }

    @Test func tooManyDimensions() {
        var g = HostileGGUF(tensors: 1, keyValues: 0)
        g.tensor("token_embd.weight", dims: [1, 1, 1, 1, 1, 1, 1, 1, 1])
        expectRejected(g.bytes, field("n_dims"))
    }

    @Test func countsNearTwoToThe63() {
        expectRejected(HostileGGUF(tensors: 1 << 63, keyValues: 0).bytes, field("tensor count"))
        expectRejected(HostileGGUF(tensors: 0, keyValues: (1 << 63) - 1).bytes, field("metadata count"))
        var s = HostileGGUF(tensors: 0, keyValues: 1)
        s.u64(1 << 62)  // key length
        expectRejected(s.bytes, field("metadata key"))
        var a = HostileGGUF(tensors: 0, keyValues: 1)
        a.string("tokenizer.ggml.tokens")
        a.u32(9)
        a.u32(8)
        a.u64(1 << 62)  // array length
        expectRejected(a.bytes, field("tokenizer.ggml.tokens"))
    }

    @Test(arguments: [UInt32(0), 3, 48, 1 << 30])
    func badAlignment(_ alignment: UInt32) {
        var g = HostileGGUF(tensors: 0, keyValues: 1)
        g.key("general.alignment", u32: alignment)
        expectRejected(g.bytes, field("general.alignment"))
    }

    @Test func wrongArrayElementType() throws {
        // Token scores declared as u8 instead of f32.
        var w = TinyModel.gguf()
        w.set("tokenizer.ggml.scores", .strings(TinyModel.tokenizer.pieces))
        expectRejected(w.encoded(), field("tokenizer.ggml.scores"))
        var t = TinyModel.gguf()
        t.set("tokenizer.ggml.token_type", .f32s([Float](repeating: 1, count: 300)))
        expectRejected(t.encoded(), field("tokenizer.ggml.token_type"))
    }

    @Test func nestedArrays() {
        var g = HostileGGUF(tensors: 0, keyValues: 1)
        g.string("nested")
        g.u32(9)
        g.u32(9)  // array of arrays
        g.u64(1)
        g.u32(4)
        g.u64(1)
        g.u32(7)
        expectRejected(g.bytes, field("nested"))
    }

    @Test func overlappingAndPastTheEndOffsets() {
        var g = HostileGGUF(tensors: 2, keyValues: 0)
        g.tensor("a.weight", dims: [64], offset: 0)
        g.tensor("b.weight", dims: [64], offset: 32)
        while g.bytes.count % 32 != 0 { g.bytes.append(0) }
        g.bytes += [UInt8](repeating: 0, count: 512)
        expectRejected(g.bytes) { if case .tensorsOverlap = $0 { true } else { false } }
        var p = HostileGGUF(tensors: 1, keyValues: 0)
        p.tensor("a.weight", dims: [64], offset: 1 << 40)
        expectRejected(p.bytes)
        var q = HostileGGUF(tensors: 1, keyValues: 0)
        q.tensor("a.weight", dims: [200], offset: 0)  // 800 bytes of f32, 512 present
        while q.bytes.count % 32 != 0 { q.bytes.append(0) }
        q.bytes += [UInt8](repeating: 0, count: 512)
        expectRejected(q.bytes) { if case .tensorOutOfBounds = $0 { true } else { false } }
    }

    @Test func vocabularyDisagreesWithEmbedding() {
        var w = TinyModel.gguf()
        w.set("tokenizer.ggml.tokens", .strings(Array(TinyModel.tokenizer.pieces.prefix(299))))
        expectRejected(w.encoded()) { if case let .invalidField(_, f, _) = $0 { f.hasPrefix("tokenizer.") } else { false } }
    }

    @Test func unknownTensorTypeIsNamed() {
        var g = HostileGGUF(tensors: 1, keyValues: 0)
        g.tensor("token_embd.weight", dims: [256, 4], type: 16)
        while g.bytes.count % 32 != 0 { g.bytes.append(0) }
        g.bytes += [UInt8](repeating: 0, count: 4096)
        expectRejected(g.bytes) { if case let .unsupportedTensorType(_, "token_embd.weight", type) = $0 { type.contains("IQ2_XXS") } else { false } }
    }

    @Test func absurdHeadWidthIsRefused() {
        var w = TinyModel.gguf()
        w.set("llama.attention.key_length", .u32(1 << 30))
        w.set("llama.rope.dimension_count", .u32(1 << 30))
        expectRejected(w.encoded()) { if case .invalidField(_, "llama.attention.key_length", _) = $0 { true } else { false } }
    }

    @Test func partialQuantizedBlocksAreRefused() {
        var g = HostileGGUF(tensors: 1, keyValues: 0)
        g.tensor("token_embd.weight", dims: [32, 4], type: 12)
        while g.bytes.count % 32 != 0 { g.bytes.append(0) }
        g.bytes += [UInt8](repeating: 0, count: 4096)
        expectRejected(g.bytes) { if case let .invalidField(_, _, message) = $0 { message.contains("not whole Q4_K blocks") } else { false } }
    }
}

/// Every reader survives systematic damage to real files: truncation at many lengths and bit flips.
@Suite struct ReaderDamageTests {
    func seeds() throws -> [(UntrustedInput, [UInt8])] {
        let dir = TemporaryDirectory()
        try TinyModel.gguf().write(to: dir.file("t.gguf"))
        let c = try Checkpoint.open(path: dir.file("t.gguf"), tokenizerPath: nil)
        _ = try Converter.convert(c, to: dir.file("t.edgelm"), options: ConversionOptions(type: .q4, zstdLevel: 3))
        func read(_ p: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: p))) }
        var list: [(UntrustedInput, [UInt8])] = [(.gguf, try read(dir.file("t.gguf"))), (.edgelm, try read(dir.file("t.edgelm")))]
        if Fixtures.available(Fixtures.stories + "tok512.bin") {
            list.append((.llama2cTokenizer, try read(Fixtures.path(Fixtures.stories + "tok512.bin"))))
        }
        if Fixtures.available(Fixtures.tiny656k + "/config.json") {
            list.append((.config, try read(Fixtures.path(Fixtures.tiny656k + "/config.json"))))
            list.append((.tokenizerJSON, try read(Fixtures.path(Fixtures.tiny656k + "/tokenizer.json"))))
        }
        return list
    }

    @Test func truncationsAndBitFlipsNeverCrash() throws {
        var rng = TestRandom(seed: 11)
        for (reader, bytes) in try seeds() {
            var outcomes = (accepted: 0, rejected: 0)
            func attempt(_ input: [UInt8]) {
                do {
                    try withBytes(of: input) { (b) throws(EdgeLMError) in try reader.parse(b) }
                    outcomes.accepted += 1
                } catch {
                    outcomes.rejected += 1
                }
            }
            for cut in stride(from: 0, to: bytes.count, by: max(1, bytes.count / 97)) { attempt(Array(bytes.prefix(cut))) }
            for _ in 0..<150 {
                var damaged = bytes
                for _ in 0..<(1 + Int(rng.next() % 4)) {
                    let i = Int(rng.next() % UInt64(damaged.count))
                    damaged[i] ^= UInt8(1 << (rng.next() % 8))
                }
                attempt(damaged)
            }
            // Truncations must be rejected (except the empty-prefix-free formats that tolerate it: none here).
            #expect(outcomes.rejected >= 97, "\(reader): \(outcomes)")
        }
    }
}
