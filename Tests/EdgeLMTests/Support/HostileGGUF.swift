/// Builds GGUF bytes field by field, so tests can write exactly the malformed headers that have broken
/// other parsers.
struct HostileGGUF {
    var bytes: [UInt8] = Array("GGUF".utf8)

    init(version: UInt32 = 3, tensors: UInt64, keyValues: UInt64) {
        u32(version)
        u64(tensors)
        u64(keyValues)
    }

    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes += s.utf8
    }

    /// A key with a u32 value.
    mutating func key(_ k: String, u32 value: UInt32) {
        string(k)
        u32(4)
        u32(value)
    }

    /// A key with a string value.
    mutating func key(_ k: String, string value: String) {
        string(k)
        u32(8)
        string(value)
    }

    /// A tensor info record.
    mutating func tensor(_ name: String, dims: [UInt64], type: UInt32 = 0, offset: UInt64 = 0) {
        string(name)
        u32(UInt32(dims.count))
        for d in dims { u64(d) }
        u32(type)
        u64(offset)
    }
}
