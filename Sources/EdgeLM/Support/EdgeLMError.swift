/// Every failure EdgeLM reports. Each case names the file (or input) and the field at fault, so the
/// message alone tells a user what is wrong.
public enum EdgeLMError: Error, Equatable, Sendable, CustomStringConvertible {
    /// An operating-system level failure (missing file, permission, disk full).
    case io(path: String, message: String)
    /// The file ended before a structure it declares.
    case truncated(path: String, field: String, offset: Int, needed: Int, available: Int)
    /// The magic bytes identify some other kind of file.
    case badMagic(path: String, found: String)
    /// A format version this build does not know.
    case unsupportedVersion(path: String, version: Int, supported: String)
    /// A field holds a value that is invalid or outside its limits.
    case invalidField(path: String, field: String, message: String)
    /// A tensor's bytes lie outside the file or its data section.
    case tensorOutOfBounds(path: String, tensor: String, offset: Int, length: Int, fileSize: Int)
    /// Two tensors claim the same bytes.
    case tensorsOverlap(path: String, first: String, second: String)
    /// A tensor's byte length disagrees with its shape and scheme.
    case tensorSizeMismatch(path: String, tensor: String, expected: Int, actual: Int)
    /// A tensor's shape disagrees with the model configuration.
    case shapeMismatch(path: String, tensor: String, expected: [Int], actual: [Int])
    /// A tensor the model needs is absent.
    case missingTensor(path: String, tensor: String)
    /// A stored checksum does not match the bytes.
    case checksumMismatch(path: String, tensor: String, expected: String, actual: String)
    /// A compressed payload could not be decoded.
    case corruptCompression(path: String, tensor: String, message: String)
    /// A tensor element type the reader does not support.
    case unsupportedTensorType(path: String, tensor: String, type: String)
    /// A weight is NaN or infinite.
    case nonFiniteWeight(path: String, tensor: String, index: Int)
    /// A user-supplied option or argument is invalid.
    case invalidArgument(String)
    /// Text input that cannot be processed (invalid UTF-8, too long a prompt).
    case invalidInput(String)

    public var description: String {
        switch self {
        case let .io(path, message):
            return "\(path): \(message)"
        case let .truncated(path, field, offset, needed, available):
            return "\(path): truncated file: \(field) at byte \(offset) needs \(needed) bytes, only \(available) remain"
        case let .badMagic(path, found):
            return "\(path): not a recognised model file (magic bytes \(found))"
        case let .unsupportedVersion(path, version, supported):
            return "\(path): unsupported format version \(version) (this build reads \(supported))"
        case let .invalidField(path, field, message):
            return "\(path): invalid \(field): \(message)"
        case let .tensorOutOfBounds(path, tensor, offset, length, fileSize):
            return "\(path): tensor '\(tensor)' bytes \(offset)..<\(offset + length) lie outside the data (file is \(fileSize) bytes)"
        case let .tensorsOverlap(path, first, second):
            return "\(path): tensors '\(first)' and '\(second)' overlap"
        case let .tensorSizeMismatch(path, tensor, expected, actual):
            return "\(path): tensor '\(tensor)' has \(actual) bytes, its shape and scheme need \(expected)"
        case let .shapeMismatch(path, tensor, expected, actual):
            return "\(path): tensor '\(tensor)' has shape \(actual), the model configuration needs \(expected)"
        case let .missingTensor(path, tensor):
            return "\(path): missing tensor '\(tensor)'"
        case let .checksumMismatch(path, tensor, expected, actual):
            return "\(path): checksum mismatch in tensor '\(tensor)' (stored \(expected), computed \(actual)): the file is corrupt"
        case let .corruptCompression(path, tensor, message):
            return "\(path): corrupt zstd data in tensor '\(tensor)': \(message)"
        case let .unsupportedTensorType(path, tensor, type):
            return "\(path): tensor '\(tensor)' has unsupported type \(type)"
        case let .nonFiniteWeight(path, tensor, index):
            return "\(path): tensor '\(tensor)' holds a NaN or infinite value at element \(index)"
        case let .invalidArgument(message):
            return message
        case let .invalidInput(message):
            return message
        }
    }
}

extension ByteCursor.Error {
    /// Converts a cursor overrun into a `truncated` error naming the file and field.
    func edgeError(path: String, field: String) -> EdgeLMError {
        .truncated(path: path, field: field, offset: offset, needed: needed, available: available)
    }
}
