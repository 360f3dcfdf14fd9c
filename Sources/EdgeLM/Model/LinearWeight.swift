/// A weight matrix [rows, cols] ready for the kernels: f32 values (mapped in place, or converted from f16
/// at load), or q8/q4 blocks and f16 scales used in place from the mapping.
public struct LinearWeight: @unchecked Sendable {
    /// Output dimension.
    public let rows: Int
    /// Input dimension.
    public let cols: Int
    /// f32 for float weights, q8 or q4.
    public let scheme: TensorScheme
    /// Layout of the stored payload.
    public let layout: TensorLayout
    /// Keeps the bytes alive.
    let storage: TensorStorage
    /// The scheme's C kernel.
    let kernel: SchemeKernel

    /// Wraps a decoded tensor; f16 payloads are widened to an owned f32 buffer.
    init(storage: TensorStorage, layout: TensorLayout) {
        rows = layout.rows
        cols = layout.cols
        if layout.scheme == .f16 {
            let (owned, out) = TensorStorage.allocate(count: layout.count * 4)
            let dst = out.bindMemory(to: Float.self)
            for r in 0..<layout.rows { Quantizer.decodeRow(r, payload: storage.bytes, layout: layout, into: dst.baseAddress! + r * layout.cols) }
            self.storage = owned
            // The layout of the widened copy.
            self.layout = try! TensorLayout(shape: [layout.rows, layout.cols], scheme: .f32, groupSize: 0)
            scheme = .f32
        } else {
            self.storage = storage
            self.layout = layout
            scheme = layout.scheme
        }
        kernel = SchemeKernel(scheme)
    }

    /// f32 values (scheme f32 only).
    var floats: UnsafePointer<Float> { storage.bytes.baseAddress!.assumingMemoryBound(to: Float.self) }
    /// Code blocks (quantized schemes).
    var codes: UnsafeRawPointer { storage.bytes.baseAddress! }
    /// Scale words (quantized schemes): f16 scales (signed for q4n), or q4a's 12-bit scales with zero points.
    var scales: UnsafePointer<UInt16> { (storage.bytes.baseAddress! + layout.scalesOffset).assumingMemoryBound(to: UInt16.self) }
    /// Bytes the kernels read for one full pass over the matrix.
    public var byteCount: Int { layout.byteCount }

    /// Writes row `r` as floats into `out`.
    func row(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        Quantizer.decodeRow(r, payload: storage.bytes, layout: layout, into: out)
    }
}
