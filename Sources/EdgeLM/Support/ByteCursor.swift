/// A bounds-checked little-endian reader over a byte buffer. Every read that would pass the end throws
/// `ByteCursor.Error.truncated` instead of trapping, so parsers of untrusted files stay memory safe.
public struct ByteCursor {
    /// Raised when a read needs more bytes than remain.
    public struct Error: Swift.Error, Sendable {
        /// Offset at which the read was attempted.
        public let offset: Int
        /// Bytes the read needed.
        public let needed: Int
        /// Bytes that remained.
        public let available: Int
    }

    /// The buffer being read.
    public let bytes: UnsafeRawBufferPointer
    /// Offset of the next read.
    public var offset: Int

    /// Creates a cursor at `offset` of `bytes`.
    public init(_ bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    /// Bytes left after the cursor.
    public var remaining: Int { max(0, bytes.count - offset) }

    /// Checks that `count` bytes can be read at the cursor.
    public func require(_ count: Int) throws(Error) {
        guard count >= 0, offset >= 0, offset <= bytes.count, count <= bytes.count - offset else {
            throw Error(offset: offset, needed: count, available: remaining)
        }
    }

    /// Reads a fixed-width little-endian integer.
    public mutating func read<T: FixedWidthInteger>(_: T.Type = T.self) throws(Error) -> T {
        try require(MemoryLayout<T>.size)
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: value)
    }

    /// Reads a little-endian IEEE single.
    public mutating func readFloat() throws(Error) -> Float {
        Float(bitPattern: try read(UInt32.self))
    }

    /// Reads a little-endian IEEE double.
    public mutating func readDouble() throws(Error) -> Double {
        Double(bitPattern: try read(UInt64.self))
    }

    /// Returns the next `count` bytes and advances past them.
    public mutating func readBytes(_ count: Int) throws(Error) -> UnsafeRawBufferPointer {
        try require(count)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return slice
    }

    /// Moves the cursor forward by `count` bytes.
    public mutating func skip(_ count: Int) throws(Error) {
        try require(count)
        offset += count
    }
}

/// Runs parsing code that may throw cursor overruns or `EdgeLMError`: an overrun becomes `truncated` naming
/// `field`, anything else unexpected becomes `invalidField`.
func parsing<T>(path: String, field: @autoclosure () -> String, _ body: () throws -> T) throws(EdgeLMError) -> T {
    do {
        return try body()
    } catch let e as ByteCursor.Error {
        throw e.edgeError(path: path, field: field())
    } catch let e as EdgeLMError {
        throw e
    } catch {
        throw .invalidField(path: path, field: field(), message: "\(error)")
    }
}
