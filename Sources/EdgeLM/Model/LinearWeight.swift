import CEdgeKernels
import Foundation

/// A weight matrix [rows, cols] ready for the kernels: f32 values (mapped in place, or converted from f16
/// at load), or q8/q4 blocks and f16 scales used in place from the mapping; for a level with its own packed
/// kernel, q8/q4 rows also packed sixteen at a time (`PackedRows`), which that level's products then read instead.
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
    /// The whole 16-row groups packed for `packed.level` (see `pack(for:)`), or nil.
    private(set) var packed: PackedRows?

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

    /// The packed layout of this matrix's scheme (`edge_packed_kind`: q8, q4, q4o), or nil.
    private var packedKind: Int32? {
        switch scheme {
        case .q8: Int32(EDGE_PACKED_Q8.rawValue)
        case .q4: Int32(EDGE_PACKED_Q4.rawValue)
        case .q4o: Int32(EDGE_PACKED_Q4O.rawValue)
        default: nil
        }
    }

    /// Bytes of the packed copy `pack(for:mapping:)` would make for `level`, or nil when it makes none: q8, q4 or q4o
    /// rows (any scale grouping) mapped from the file, 16 rows or more, where the level's own packed kernel is faster
    /// (`edge_packed_native`: AVX-512 VNNI and AVX-VNNI every kind, AVX2 q4). Rows decoded from zstd payloads are not
    /// packed: their heap copy would be held twice.
    func packedByteCount(for level: KernelLevel) -> Int? {
        guard let kind = packedKind, rows >= 16, storage.isMapped, edge_packed_native(level.rawValue, kind) != 0 else { return nil }
        return Int(edge_packed_bytes(kind, Int64(rows), Int64(layout.blocksPerRow)))
    }

    /// Packs the rows for `level` (when `packedByteCount(for:)` is not nil): every product at that level then reads
    /// the copy, whose kernel advances 16 rows per instruction and applies each block's scales in one FMA for all of
    /// them (decode of short rows 1.7-3.8x, batches 1.0-2x the row-major kernels' speed, one thread). The mapped
    /// original's pages are released (the file's page cache keeps them for a tied embedding's lookups), so the
    /// weights stay resident once, not twice.
    mutating func pack(for level: KernelLevel, mapping: MappedFile) {
        guard let count = packedByteCount(for: level), let kind = packedKind else { return }
        let (owned, out) = TensorStorage.allocate(count: count, zeroed: false)
        // In parts on every core: packing a 1.1 GB q8 file took 0.9 s on one.
        let groups = rows / 16, parts = max(1, min(ProcessInfo.processInfo.activeProcessorCount, groups / 64))
        let source = UncheckedSendable((codes, scales, out.baseAddress!))
        let (matrixRows, blocks, grouping) = (Int64(rows), Int64(layout.blocksPerRow), Int64(layout.blocksPerGroup))
        DispatchQueue.concurrentPerform(iterations: parts) { part in
            let (w, ws, packed) = source.value
            edge_pack_rows(kind, w, ws, matrixRows, blocks, grouping, Int64(groups * part / parts), Int64(groups * (part + 1) / parts), packed)
        }
        packed = PackedRows(storage: owned, rows: rows / 16 * 16, kind: kind, level: level)
        mapping.release(storage.bytes)
    }
}

/// A matrix's rows [0, rows) in the layout of `edge_pack_rows`, for the kernels of `level`.
struct PackedRows: @unchecked Sendable {
    /// The packed bytes (owned).
    let storage: TensorStorage
    /// Rows in the copy: the matrix's whole 16-row groups.
    let rows: Int
    /// The layout's `edge_packed_kind`.
    let kind: Int32
    /// The level whose products read the copy.
    let level: KernelLevel
}
