/// The fixed 64-byte header at the start of every `.edgelm` file (all integers little-endian):
///
/// | offset | type    | field                                   |
/// |--------|---------|-----------------------------------------|
/// | 0      | 8 bytes | magic `EDGELM\0\x1A`                    |
/// | 8      | u32     | format version                          |
/// | 12     | u32     | header size (64)                        |
/// | 16     | u64     | data section offset (page aligned)      |
/// | 24     | u64     | data section length                     |
/// | 32     | u64     | metadata offset                         |
/// | 40     | u64     | metadata length                         |
/// | 48     | u64     | xxHash64 of the metadata bytes          |
/// | 56     | u64     | xxHash64 of header bytes 0..<56         |
public struct FileHeader: Equatable, Sendable {
    /// The magic bytes.
    public static let magic: [UInt8] = Array("EDGELM".utf8) + [0, 0x1A]
    /// The version this build writes and reads.
    public static let currentVersion = 1
    /// Header size in bytes.
    public static let size = 64
    /// Alignment of the data section (a page on every supported system).
    public static let dataAlignment = 4096
    /// Largest metadata section accepted.
    public static let maxMetadataBytes = 512 << 20

    /// Format version.
    public var version: Int
    /// Data section offset.
    public var dataOffset: Int
    /// Data section length.
    public var dataLength: Int
    /// Metadata offset.
    public var metadataOffset: Int
    /// Metadata length.
    public var metadataLength: Int
    /// xxHash64 of the metadata.
    public var metadataChecksum: UInt64

    /// Serialises the header, including its own checksum.
    public func encoded() -> [UInt8] {
        var bytes = Self.magic
        func put<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
        put(UInt32(version))
        put(UInt32(Self.size))
        put(UInt64(dataOffset))
        put(UInt64(dataLength))
        put(UInt64(metadataOffset))
        put(UInt64(metadataLength))
        put(metadataChecksum)
        let check = bytes.withUnsafeBytes { XXH64.hash($0) }
        put(check)
        return bytes
    }

    /// Parses and validates a header against the file size.
    public static func decode(_ file: UnsafeRawBufferPointer, path: String) throws(EdgeLMError) -> FileHeader {
        var c = ByteCursor(file)
        do {
            try c.require(magic.count)
        } catch {
            throw error.edgeError(path: path, field: "header")
        }
        let found = Array(file[0..<magic.count])
        guard found == magic else {
            throw .badMagic(path: path, found: found.map { String($0, radix: 16) }.joined(separator: " "))
        }
        return try parsing(path: path, field: "header") {
            try c.skip(magic.count)
            let version = Int(try c.read(UInt32.self))
            guard version == currentVersion else {
                throw EdgeLMError.unsupportedVersion(path: path, version: version, supported: "\(currentVersion)")
            }
            try c.require(size - magic.count - 4)
            let headerSize = Int(try c.read(UInt32.self))
            guard headerSize == size else {
                throw EdgeLMError.invalidField(path: path, field: "header size", message: "\(headerSize), expected \(size)")
            }
            let fields = try (0..<5).map { _ throws(ByteCursor.Error) in try c.read(UInt64.self) }
            let stored = try c.read(UInt64.self)
            let computed = XXH64.hash(UnsafeRawBufferPointer(rebasing: file[0..<56]))
            guard stored == computed else {
                throw EdgeLMError.checksumMismatch(
                    path: path, tensor: "<header>", expected: String(stored, radix: 16),
                    actual: String(computed, radix: 16))
            }
            let limit = UInt64(Int.max / 2)
            guard fields[0..<4].allSatisfy({ $0 < limit }) else {
                throw EdgeLMError.invalidField(path: path, field: "header offsets", message: "values beyond any file size")
            }
            let h = FileHeader(
                version: version, dataOffset: Int(fields[0]), dataLength: Int(fields[1]),
                metadataOffset: Int(fields[2]), metadataLength: Int(fields[3]), metadataChecksum: fields[4])
            try h.validate(fileSize: file.count, path: path)
            return h
        }
    }

    private func validate(fileSize: Int, path: String) throws(EdgeLMError) {
        guard dataOffset >= Self.size, dataOffset % Self.dataAlignment == 0 else {
            throw .invalidField(path: path, field: "data offset", message: "\(dataOffset) is not a multiple of \(Self.dataAlignment) after the header")
        }
        guard dataOffset + dataLength <= fileSize else {
            throw .truncated(
                path: path, field: "data section", offset: dataOffset, needed: dataLength,
                available: max(0, fileSize - dataOffset))
        }
        guard metadataLength <= Self.maxMetadataBytes else {
            throw .invalidField(path: path, field: "metadata length", message: "\(metadataLength) bytes exceeds the limit of \(Self.maxMetadataBytes)")
        }
        guard metadataOffset >= dataOffset + dataLength else {
            throw .invalidField(path: path, field: "metadata offset", message: "\(metadataOffset) overlaps the data section")
        }
        guard metadataOffset + metadataLength <= fileSize else {
            throw .truncated(
                path: path, field: "metadata", offset: metadataOffset, needed: metadataLength,
                available: max(0, fileSize - metadataOffset))
        }
    }
}
