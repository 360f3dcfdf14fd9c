import Foundation
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Writes a `.edgelm` file atomically: everything goes to a temporary file in the target directory,
/// which is fsync'ed and renamed over the target only by `finish`. Until then, and after any error,
/// the target path is untouched; the temporary file is removed on error or when the writer is dropped.
public final class ModelWriter {
    /// Raw zstd chunk size: 1 MiB of decoded bytes per frame.
    public static let defaultChunkBytes = 1 << 20

    /// The final path.
    public let path: String
    /// The temporary path being written.
    public let temporaryPath: String
    private var fd: Int32
    private var dataLength = 0
    private var entries: [TensorEntry] = []
    private var finished = false

    /// Creates the temporary file. Fails if `path` exists and `overwrite` is false, or if its directory
    /// does not exist.
    public init(path: String, overwrite: Bool) throws(EdgeLMError) {
        self.path = path
        let dir = (path as NSString).deletingLastPathComponent
        let directory = dir.isEmpty ? "." : dir
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: directory, isDirectory: &isDir), isDir.boolValue else {
            throw .io(path: path, message: "output directory '\(directory)' does not exist")
        }
        if !overwrite, FileManager.default.fileExists(atPath: path) {
            throw .io(path: path, message: "output exists; pass --force to overwrite it")
        }
        let base = (path as NSString).lastPathComponent
        var template = Array("\(directory)/.\(base).tmp-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw .io(path: path, message: "cannot create a temporary file in '\(directory)': \(Errno.describe(errno))") }
        self.fd = fd
        temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        _ = fchmod(fd, 0o644)
        TemporaryFiles.shared.register(temporaryPath)
    }

    deinit { abort() }

    /// Appends a tensor payload (its decoded layout bytes), encoding it as requested, and returns its entry.
    @discardableResult
    public func append(
        name: String, shape: [Int], scheme: TensorScheme, groupSize: Int,
        payload: UnsafeRawBufferPointer, zstdLevel: Int?
    ) throws(EdgeLMError) -> TensorEntry {
        let layout = try TensorLayout(shape: shape, scheme: scheme, groupSize: groupSize)
        precondition(payload.count == layout.byteCount, "payload of \(name) does not match its layout")
        let offset = (dataLength + TensorLayout.alignment - 1) / TensorLayout.alignment * TensorLayout.alignment
        var entry = TensorEntry(
            name: name, shape: shape, scheme: scheme, groupSize: scheme.isQuantized ? groupSize : 0,
            offset: offset, length: 0, encoding: .raw, chunkBytes: nil, chunks: nil,
            checksum: "", rawChecksum: nil)
        if let level = zstdLevel {
            let chunkBytes = Self.defaultChunkBytes
            let starts = Array(stride(from: 0, to: payload.count, by: chunkBytes))
            let frames = try Self.compressChunks(payload, starts: starts, chunkBytes: chunkBytes, level: level)
            let stored = Array(frames.joined())
            entry.encoding = .zstd
            entry.chunkBytes = chunkBytes
            entry.chunks = frames.map(\.count)
            entry.rawChecksum = XXH64.hex(payload)
            try withBytes(of: stored) { (buf) throws(EdgeLMError) in try write(buf, at: offset) }
            entry.length = stored.count
            entry.checksum = stored.withUnsafeBytes { XXH64.hex($0) }
        } else {
            try write(payload, at: offset)
            entry.length = payload.count
            entry.checksum = XXH64.hex(payload)
        }
        dataLength = offset + entry.length
        entries.append(entry)
        return entry
    }

    private static func compressChunks(
        _ payload: UnsafeRawBufferPointer, starts: [Int], chunkBytes: Int,
        level: Int
    ) throws(EdgeLMError) -> [[UInt8]] {
        let results = ConcurrentSlots<Result<[UInt8], EdgeLMError>>(count: starts.count)
        let source = UncheckedSendable(payload)
        DispatchQueue.concurrentPerform(iterations: starts.count) { i in
            let payload = source.value
            let lo = starts[i]
            let chunk = UnsafeRawBufferPointer(rebasing: payload[lo..<min(payload.count, lo + chunkBytes)])
            results.set(i, Result { () throws(EdgeLMError) in try Zstd.compress(chunk, level: level) })
        }
        return try results.values.map { (r) throws(EdgeLMError) in try r!.get() }
    }

    /// Writes the metadata (with the tensor directory) and header, syncs and renames into place.
    public func finish(
        config: ModelConfig, tokenizer: TokenizerData, provenance: Provenance,
        quantization: QuantizationSettings
    ) throws(EdgeLMError) {
        let metadata = ModelMetadata(
            config: config, tokenizer: tokenizer, provenance: provenance,
            quantization: quantization, tensors: entries)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let json: Data
        do { json = try encoder.encode(metadata) } catch { throw EdgeLMError.invalidArgument("cannot encode metadata: \(error)") }
        let metadataOffset = FileHeader.dataAlignment + dataLength
        try withBytes(of: json) { (buf) throws(EdgeLMError) in try writeAbsolute(buf, at: metadataOffset) }
        let header = FileHeader(
            version: FileHeader.currentVersion, dataOffset: FileHeader.dataAlignment, dataLength: dataLength,
            metadataOffset: metadataOffset, metadataLength: json.count,
            metadataChecksum: json.withUnsafeBytes { XXH64.hash($0) })
        try withBytes(of: header.encoded()) { (buf) throws(EdgeLMError) in try writeAbsolute(buf, at: 0) }
        guard fsync(fd) == 0 else { throw .io(path: temporaryPath, message: "fsync failed: \(Errno.describe(errno))") }
        guard close(fd) == 0 else { fd = -1; throw .io(path: temporaryPath, message: "close failed: \(Errno.describe(errno))") }
        fd = -1
        guard rename(temporaryPath, path) == 0 else {
            throw .io(path: path, message: "cannot rename the temporary file into place: \(Errno.describe(errno))")
        }
        finished = true
        TemporaryFiles.shared.unregister(temporaryPath)
        let dir = (path as NSString).deletingLastPathComponent
        let dirfd = open(dir.isEmpty ? "." : dir, O_RDONLY)
        if dirfd >= 0 {
            _ = fsync(dirfd)
            close(dirfd)
        }
    }

    /// Discards the temporary file (no effect after `finish`).
    public func abort() {
        guard !finished else { return }
        finished = true
        if fd >= 0 { close(fd) }
        fd = -1
        unlink(temporaryPath)
        TemporaryFiles.shared.unregister(temporaryPath)
    }

    private func write(_ bytes: UnsafeRawBufferPointer, at dataRelativeOffset: Int) throws(EdgeLMError) {
        try writeAbsolute(bytes, at: FileHeader.dataAlignment + dataRelativeOffset)
    }

    private func writeAbsolute(_ bytes: UnsafeRawBufferPointer, at offset: Int) throws(EdgeLMError) {
        var done = 0
        while done < bytes.count {
            let n = pwrite(fd, bytes.baseAddress! + done, bytes.count - done, off_t(offset + done))
            if n < 0 {
                if errno == EINTR { continue }
                throw .io(path: temporaryPath, message: "write failed: \(Errno.describe(errno))")
            }
            done += n
        }
    }
}

/// Temporary output files in progress, so a signal handler can remove them before the process dies.
public final class TemporaryFiles: @unchecked Sendable {
    /// The process-wide registry.
    public static let shared = TemporaryFiles()
    private var paths: Set<String> = []
    private let lock = NSLock()

    func register(_ path: String) {
        lock.lock()
        paths.insert(path)
        lock.unlock()
    }

    func unregister(_ path: String) {
        lock.lock()
        paths.remove(path)
        lock.unlock()
    }

    /// Unlinks every registered temporary file (called on SIGINT/SIGTERM).
    public func removeAll() {
        lock.lock()
        for p in paths { unlink(p) }
        paths.removeAll()
        lock.unlock()
    }
}
