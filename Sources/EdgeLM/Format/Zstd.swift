import CZstd

/// Thin wrappers over libzstd for whole-frame compression of tensor chunks.
enum Zstd {
    /// Compresses `input` into one frame at `level`.
    static func compress(_ input: UnsafeRawBufferPointer, level: Int) throws(EdgeLMError) -> [UInt8] {
        let bound = ZSTD_compressBound(input.count)
        var out = [UInt8](repeating: 0, count: bound)
        let written = out.withUnsafeMutableBytes { dst in
            ZSTD_compress(dst.baseAddress, bound, input.baseAddress, input.count, Int32(level))
        }
        if ZSTD_isError(written) != 0 {
            throw .invalidArgument("zstd compression failed: \(String(cString: ZSTD_getErrorName(written)))")
        }
        out.removeSubrange(written...)
        return out
    }

    /// Decodes one frame into exactly `output.count` bytes; anything else is an error message.
    static func decompress(_ input: UnsafeRawBufferPointer, into output: UnsafeMutableRawBufferPointer) -> String? {
        let declared = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        if declared == ZSTD_CONTENTSIZE_ERROR { return "not a zstd frame" }
        if declared != ZSTD_CONTENTSIZE_UNKNOWN, declared != UInt64(output.count) {
            return "frame declares \(declared) bytes, expected \(output.count)"
        }
        let n = ZSTD_decompress(output.baseAddress, output.count, input.baseAddress, input.count)
        if ZSTD_isError(n) != 0 { return String(cString: ZSTD_getErrorName(n)) }
        if n != output.count { return "frame decoded to \(n) bytes, expected \(output.count)" }
        return nil
    }

    /// Valid compression levels.
    static var levels: ClosedRange<Int> { Int(ZSTD_minCLevel())...Int(ZSTD_maxCLevel()) }
}
