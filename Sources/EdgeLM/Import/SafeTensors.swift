import Foundation

/// Reads the header of a `.safetensors` file: an 8-byte little-endian header length, a JSON object of
/// `name: {dtype, shape, data_offsets}`, then the data. Every entry is checked (dtype, shape x dtype =
/// byte length, offsets inside the file, no overlaps) before any tensor is used.
enum SafeTensors {
    /// Limits on untrusted headers.
    enum Limits {
        static let maxHeaderBytes = 100 << 20
        static let maxDims = 4
    }

    /// The tensors of one file, viewed in place.
    static func read(_ file: MappedFile) throws(EdgeLMError) -> [String: SourceTensor] {
        let path = file.path
        var c = ByteCursor(file.bytes)
        let length: UInt64
        do { length = try c.read(UInt64.self) } catch { throw error.edgeError(path: path, field: "safetensors header length") }
        guard length <= UInt64(Limits.maxHeaderBytes) else {
            throw .invalidField(path: path, field: "safetensors header length", message: "\(length) bytes exceeds \(Limits.maxHeaderBytes)")
        }
        guard Int(length) <= c.remaining else {
            throw .truncated(path: path, field: "safetensors header", offset: 8, needed: Int(length), available: c.remaining)
        }
        let headerBytes = UnsafeRawBufferPointer(rebasing: file.bytes[8..<(8 + Int(length))])
        guard let json = try? JSONSerialization.jsonObject(with: Data(headerBytes)) as? [String: Any] else {
            throw .invalidField(path: path, field: "safetensors header", message: "not a JSON object")
        }
        let dataStart = 8 + Int(length)
        let dataBytes = file.bytes.count - dataStart
        var tensors: [String: SourceTensor] = [:]
        var ranges: [(Int, Int, String)] = []
        for (name, value) in json where name != "__metadata__" {
            func bad(_ message: String) -> EdgeLMError { .invalidField(path: path, field: "safetensors tensor '\(name)'", message: message) }
            guard let entry = value as? [String: Any], let dtypeName = entry["dtype"] as? String,
                let shape = entry["shape"] as? [Int], let offsets = entry["data_offsets"] as? [Int], offsets.count == 2
            else {
                throw bad("needs dtype, shape and two data_offsets")
            }
            let dtype: SourceDType
            switch dtypeName {
            case "F32": dtype = .f32
            case "F16": dtype = .f16
            case "BF16": dtype = .bf16
            default: throw .unsupportedTensorType(path: path, tensor: name, type: "\(dtypeName) (only F32, F16 and BF16 are read)")
            }
            guard shape.count <= Limits.maxDims, shape.allSatisfy({ $0 >= 0 }) else { throw bad("shape \(shape) is invalid") }
            var count = 1
            for d in shape {
                let (m, o) = count.multipliedReportingOverflow(by: d)
                guard !o, m <= dataBytes else { throw bad("shape \(shape) holds more elements than the file has bytes") }
                count = m
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin >= 0, begin <= end, end <= dataBytes else {
                throw .tensorOutOfBounds(path: path, tensor: name, offset: dataStart + begin, length: end - begin, fileSize: file.bytes.count)
            }
            guard end - begin == count * dtype.size else {
                throw .tensorSizeMismatch(path: path, tensor: name, expected: count * dtype.size, actual: end - begin)
            }
            if end > begin { ranges.append((begin, end, name)) }
            tensors[name] = SourceTensor(
                name: name, shape: shape, dtype: dtype,
                bytes: UnsafeRawBufferPointer(rebasing: file.bytes[(dataStart + begin)..<(dataStart + end)]))
        }
        ranges.sort { $0.0 < $1.0 }
        for (a, b) in zip(ranges, ranges.dropFirst()) where a.1 > b.0 {
            throw .tensorsOverlap(path: path, first: a.2, second: b.2)
        }
        return tensors
    }
}
