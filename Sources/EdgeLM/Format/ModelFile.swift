import Foundation

/// Bytes of one decoded tensor: either a view into the memory map (raw payloads, zero copy) or an owned
/// heap buffer (decoded zstd payloads, converted f16).
public final class TensorStorage: @unchecked Sendable {
    /// The tensor's decoded layout bytes.
    public let bytes: UnsafeRawBufferPointer
    /// True when the bytes live in the file mapping rather than on the heap.
    public let isMapped: Bool
    private let owned: UnsafeMutableRawPointer?
    private let keepAlive: AnyObject?

    init(mapped bytes: UnsafeRawBufferPointer, file: AnyObject) {
        self.bytes = bytes
        isMapped = true
        owned = nil
        keepAlive = file
    }

    /// Takes ownership of `count` bytes at `pointer` (allocated with 64-byte alignment).
    init(owning pointer: UnsafeMutableRawPointer, count: Int) {
        bytes = UnsafeRawBufferPointer(start: pointer, count: count)
        isMapped = false
        owned = pointer
        keepAlive = nil
    }

    /// Allocates an owned, 64-byte aligned buffer, zero-filled unless the caller writes every byte (`zeroed` false).
    static func allocate(count: Int, zeroed: Bool = true) -> (TensorStorage, UnsafeMutableRawBufferPointer) {
        let p = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: TensorLayout.alignment)
        if zeroed { p.initializeMemory(as: UInt8.self, repeating: 0, count: max(count, 1)) }
        return (TensorStorage(owning: p, count: count), UnsafeMutableRawBufferPointer(start: p, count: count))
    }

    deinit { owned?.deallocate() }
}

/// An opened, fully validated `.edgelm` file. Opening costs O(metadata): payloads are only touched
/// when a tensor is requested (or when checksums are verified).
public final class ModelFile: @unchecked Sendable {
    /// Limits on the tensor directory.
    public enum Limits {
        public static let maxTensors = 1 << 16
        public static let maxNameBytes = 256
        public static let minChunkBytes = 4_096
    }

    /// Path of the file.
    public let path: String
    /// The memory mapping.
    public let mapping: MappedFile
    /// The parsed header.
    public let header: FileHeader
    /// The parsed and validated metadata.
    public let metadata: ModelMetadata
    private let index: [String: Int]

    /// Opens and validates `path`; with `verify`, also checks every tensor checksum.
    public convenience init(path: String, verify: Bool = false) throws(EdgeLMError) {
        try self.init(mapping: try MappedFile(path: path), verify: verify)
    }

    /// Validates an already mapped (or in-memory) file.
    public init(mapping: MappedFile, verify: Bool = false) throws(EdgeLMError) {
        let path = mapping.path
        self.path = path
        self.mapping = mapping
        let file = mapping.bytes
        header = try FileHeader.decode(file, path: path)
        let metaBytes = UnsafeRawBufferPointer(rebasing: file[header.metadataOffset..<(header.metadataOffset + header.metadataLength)])
        let computed = XXH64.hash(metaBytes)
        guard computed == header.metadataChecksum else {
            throw .checksumMismatch(
                path: path, tensor: "<metadata>", expected: String(header.metadataChecksum, radix: 16),
                actual: String(computed, radix: 16))
        }
        do {
            metadata = try JSONDecoder().decode(ModelMetadata.self, from: Data(metaBytes))
        } catch let DecodingError.keyNotFound(key, context) {
            throw .invalidField(
                path: path, field: "metadata", message: "missing key '\((context.codingPath + [key]).map(\.stringValue).joined(separator: "."))'")
        } catch let DecodingError.typeMismatch(_, context), let DecodingError.valueNotFound(_, context),
            let DecodingError.dataCorrupted(context)
        {
            throw .invalidField(
                path: path, field: "metadata", message: "\(context.codingPath.map(\.stringValue).joined(separator: ".")): \(context.debugDescription)")
        } catch {
            throw .invalidField(path: path, field: "metadata", message: "\(error)")
        }
        var index: [String: Int] = [:]
        for (i, t) in metadata.tensors.enumerated() { index[t.name] = i }
        self.index = index
        try Self.validate(metadata, header: header, path: path)
        if verify { try verifyChecksums() }
    }

    /// The directory entry for `name`.
    public func entry(_ name: String) throws(EdgeLMError) -> TensorEntry {
        guard let i = index[name] else { throw .missingTensor(path: path, tensor: name) }
        return metadata.tensors[i]
    }

    /// The stored (possibly compressed) bytes of a tensor.
    public func storedBytes(_ entry: TensorEntry) -> UnsafeRawBufferPointer {
        let start = header.dataOffset + entry.offset
        return UnsafeRawBufferPointer(rebasing: mapping.bytes[start..<(start + entry.length)])
    }

    /// Checks the stored checksum of every tensor; the error names the first corrupt tensor.
    public func verifyChecksums() throws(EdgeLMError) {
        for entry in metadata.tensors {
            let actual = XXH64.hex(storedBytes(entry))
            guard actual == entry.checksum else {
                throw .checksumMismatch(path: path, tensor: entry.name, expected: entry.checksum, actual: actual)
            }
        }
    }

    /// The decoded bytes of tensor `name`: a view into the mapping for raw payloads, a freshly decoded
    /// buffer (frames decoded in parallel, checked against the decoded checksum) for zstd payloads.
    public func tensor(_ name: String) throws(EdgeLMError) -> TensorStorage {
        let entry = try entry(name)
        let stored = storedBytes(entry)
        switch entry.encoding {
        case .raw:
            return TensorStorage(mapped: stored, file: mapping)
        case .zstd:
            return try decodeZstd(entry, stored: stored)
        }
    }

    private func decodeZstd(_ entry: TensorEntry, stored: UnsafeRawBufferPointer) throws(EdgeLMError) -> TensorStorage {
        let layout = try entry.layout()
        let chunkBytes = entry.chunkBytes ?? 0
        let chunks = entry.chunks ?? []
        let (storage, out) = TensorStorage.allocate(count: layout.byteCount)
        var offsets = [Int](repeating: 0, count: chunks.count)
        for i in chunks.indices.dropFirst() { offsets[i] = offsets[i - 1] + chunks[i - 1] }
        let starts = offsets
        let failures = ConcurrentSlots<String>(count: chunks.count)
        let src = UncheckedSendable(stored), dstAll = UncheckedSendable(out)
        DispatchQueue.concurrentPerform(iterations: chunks.count) { i in
            let stored = src.value, out = dstAll.value
            let src = UnsafeRawBufferPointer(rebasing: stored[starts[i]..<(starts[i] + chunks[i])])
            let lo = i * chunkBytes
            let dst = UnsafeMutableRawBufferPointer(rebasing: out[lo..<min(out.count, lo + chunkBytes)])
            if let message = Zstd.decompress(src, into: dst) { failures.set(i, "frame \(i): \(message)") }
        }
        if let message = failures.values.compactMap({ $0 }).first {
            throw .corruptCompression(path: path, tensor: entry.name, message: message)
        }
        if let expected = entry.rawChecksum {
            let actual = XXH64.hex(storage.bytes)
            guard actual == expected else {
                throw .checksumMismatch(path: path, tensor: entry.name + " (decoded)", expected: expected, actual: actual)
            }
        }
        return storage
    }

    /// Total bytes of all payloads as stored.
    public var storedPayloadBytes: Int { metadata.tensors.reduce(0) { $0 + $1.length } }

    // MARK: - Validation

    private static func validate(_ meta: ModelMetadata, header: FileHeader, path: String) throws(EdgeLMError) {
        let config = meta.config
        try config.validate(source: path)
        try meta.tokenizer.validate(source: path, vocabSize: config.vocabSize)
        guard meta.tensors.count <= Limits.maxTensors else {
            throw .invalidField(path: path, field: "tensors", message: "\(meta.tensors.count) tensors exceed the limit \(Limits.maxTensors)")
        }
        var seen = Set<String>()
        for t in meta.tensors {
            guard t.name.utf8.count <= Limits.maxNameBytes, seen.insert(t.name).inserted else {
                throw .invalidField(path: path, field: "tensors", message: "duplicate or over-long tensor name '\(t.name.prefix(64))'")
            }
        }
        let expected = config.tensorShapes
        let expectedNames = Set(expected.map(\.name))
        if let extra = meta.tensors.first(where: { !expectedNames.contains($0.name) }) {
            throw .invalidField(path: path, field: "tensors", message: "unexpected tensor '\(extra.name)' for this configuration")
        }
        var byName: [String: TensorEntry] = [:]
        for t in meta.tensors { byName[t.name] = t }
        for (name, shape) in expected {
            guard let t = byName[name] else { throw .missingTensor(path: path, tensor: name) }
            guard t.shape == shape else { throw .shapeMismatch(path: path, tensor: name, expected: shape, actual: t.shape) }
            if TensorRole(name: name) == .norm, t.scheme != .f32 {
                throw .invalidField(path: path, field: "tensor '\(name)' scheme", message: "norm weights must be f32, found \(t.scheme.rawValue)")
            }
            try validatePayload(t, header: header, path: path)
        }
        // zstd payloads are decoded to the heap: a small file must not be able to demand unbounded memory.
        let decoded = meta.tensors.filter { $0.encoding == .zstd }.reduce(0) { $0 + ((try? $1.layout().byteCount) ?? 0) }
        guard decoded <= MemoryUsage.budgetBytes else {
            throw .invalidField(path: path, field: "tensors", message: "zstd payloads decode to \(decoded >> 20) MiB, more than 80% of this machine's memory")
        }
        let sorted = meta.tensors.sorted { $0.offset < $1.offset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.offset + a.length > b.offset {
            throw .tensorsOverlap(path: path, first: a.name, second: b.name)
        }
    }

    private static func validatePayload(_ t: TensorEntry, header: FileHeader, path: String) throws(EdgeLMError) {
        let layout: TensorLayout
        do {
            layout = try t.layout()
        } catch {
            throw .invalidField(path: path, field: "tensor '\(t.name)' layout", message: error.description)
        }
        guard t.offset >= 0, t.length >= 0, t.offset <= header.dataLength, t.length <= header.dataLength - t.offset else {
            throw .tensorOutOfBounds(
                path: path, tensor: t.name, offset: header.dataOffset + t.offset, length: t.length,
                fileSize: header.dataOffset + header.dataLength)
        }
        guard t.checksum.count == 16, t.checksum.allSatisfy(\.isHexDigit) else {
            throw .invalidField(path: path, field: "tensor '\(t.name)' checksum", message: "'\(t.checksum.prefix(32))' is not 16 hex digits")
        }
        switch t.encoding {
        case .raw:
            guard t.offset % TensorLayout.alignment == 0 else {
                throw .invalidField(path: path, field: "tensor '\(t.name)' offset", message: "\(t.offset) is not \(TensorLayout.alignment)-byte aligned")
            }
            guard t.length == layout.byteCount else {
                throw .tensorSizeMismatch(path: path, tensor: t.name, expected: layout.byteCount, actual: t.length)
            }
        case .zstd:
            guard let chunkBytes = t.chunkBytes, let chunks = t.chunks, chunkBytes >= Limits.minChunkBytes,
                chunkBytes <= 1 << 30
            else {
                throw .invalidField(
                    path: path, field: "tensor '\(t.name)' chunks", message: "zstd payload needs chunkBytes >= \(Limits.minChunkBytes) and a chunk list")
            }
            let needed = (layout.byteCount + chunkBytes - 1) / chunkBytes
            guard chunks.count == needed else {
                throw .invalidField(
                    path: path, field: "tensor '\(t.name)' chunks",
                    message: "\(chunks.count) frames, \(layout.byteCount) bytes in chunks of \(chunkBytes) need \(needed)")
            }
            var total = 0
            for c in chunks {
                guard c > 0, c <= t.length - total else {
                    throw .invalidField(
                        path: path, field: "tensor '\(t.name)' chunks", message: "frame lengths do not add up to the payload length \(t.length)")
                }
                total += c
            }
            guard total == t.length else {
                throw .invalidField(path: path, field: "tensor '\(t.name)' chunks", message: "frames cover \(total) of \(t.length) payload bytes")
            }
        }
    }
}
