import CEdgeKernels
import Foundation

/// How the KV cache stores keys and values.
public enum KVCacheType: String, Sendable, CaseIterable, Codable, CustomStringConvertible {
    /// 32-bit floats: the reference.
    case f32
    /// IEEE half floats (round to nearest even).
    case f16
    /// int8 codes with one f16 scale per block of 32 values of a head vector (heads shorter than a
    /// multiple of 32 are zero-padded). Scores are int8 dot products on the integer matrix kernels.
    case q8

    /// Bytes of the cache for `positions` positions of `config` (keys and values, scales included).
    public func bytes(_ config: ModelConfig, positions: Int) -> Int { 2 * halfBytes(config, positions: positions) }

    /// Bytes of the keys alone (or the values alone), scales included.
    func halfBytes(_ config: ModelConfig, positions: Int) -> Int {
        storeBytes(headDim: config.headDim, rows: config.layers * config.kvHeads * positions)
    }

    /// Bytes of `rows` stored head vectors of `headDim` values, scales included.
    func storeBytes(headDim: Int, rows: Int) -> Int {
        switch self {
        case .f32: return rows * headDim * 4
        case .f16: return rows * headDim * 2
        case .q8:
            let padded = KVCache.paddedHeadDim(headDim)
            return rows * (padded + padded / 32 * 2)
        }
    }

    public var description: String { rawValue }
}

/// One half of the KV cache (the keys or the values) of one sequence, per layer and KV head:
/// `[layers, kvHeads, context, rowLength]` of its type, so that the positions of one head are contiguous
/// rows (the shape the integer matrix kernels take), plus `[layers, kvHeads, context, rowLength / 32]` f16
/// scales for q8. Zeroed lazily: pages the sequence never reaches stay out of the resident set.
final class KVStore {
    let type: KVCacheType
    /// Stored values per head vector: the head dimension, rounded up to whole blocks of 32 for q8.
    let rowLength: Int
    let data: UnsafeMutableRawPointer
    let scales: UnsafeMutablePointer<UInt16>
    private let headDim: Int
    private let rows: Int

    init(type: KVCacheType, headDim: Int, rows: Int) {
        self.type = type
        self.headDim = headDim
        self.rows = rows
        rowLength = type == .q8 ? KVCache.paddedHeadDim(headDim) : headDim
        let elementBytes = type == .f32 ? 4 : type == .f16 ? 2 : 1
        data = calloc(max(1, rows * rowLength), elementBytes)!
        let scaleCount = type == .q8 ? rows * rowLength / 32 : 1
        scales = calloc(scaleCount, 2)!.bindMemory(to: UInt16.self, capacity: scaleCount)
    }

    deinit {
        free(data)
        free(scales)
    }

    /// Bytes held (codes and scales).
    var bytes: Int { type.storeBytes(headDim: headDim, rows: rows) }

    /// Writes one head vector of `headDim` floats as row `r`; q8 rows given a `transform` store
    /// (x - offset) / scale, channel by channel. Writes of different rows may run concurrently.
    func write(
        _ src: UnsafePointer<Float>, row r: Int, transform: (offset: UnsafePointer<Float>, scale: UnsafePointer<Float>)? = nil,
        level: KernelLevel
    ) {
        switch type {
        case .f32:
            (data.assumingMemoryBound(to: Float.self) + r * rowLength).update(from: src, count: headDim)
        case .f16:
            let dst = data.assumingMemoryBound(to: UInt16.self) + r * rowLength
            for i in 0..<headDim { dst[i] = HalfFloat.fromFloat(src[i]) }
        case .q8:
            let blocks = rowLength / 32
            // [rowLength] floats (the head vector, transformed and zero-padded), then [blocks] scales.
            withUnsafeTemporaryAllocation(of: Float.self, capacity: rowLength + blocks) { scratch in
                let padded = scratch.baseAddress!, blockScales = padded + rowLength
                if let (offset, scale) = transform {
                    for i in 0..<headDim { padded[i] = (src[i] - offset[i]) / scale[i] }
                } else {
                    padded.update(from: src, count: headDim)
                }
                for i in headDim..<rowLength { padded[i] = 0 }
                IntegerKernels.quantizeQ8Blocks(
                    level, padded, nblocks: blocks, codes: data.assumingMemoryBound(to: Int8.self) + r * rowLength,
                    scales: blockScales)
                for b in 0..<blocks { scales[r * blocks + b] = HalfFloat.fromFloat(blockScales[b]) }
            }
        }
    }
}

/// The keys and values of one sequence; K and V may use different types (keys are the more sensitive).
///
/// q8 keys are stored as (k - offset) / scale per channel, with an offset and a scale per (layer, head,
/// channel) taken from the sequence's first batch (its first token, usually BOS and an outlier, left out):
/// - the offset is the mean key. Scores change by q · offset, the same for every position of a query,
///   which softmax cancels exactly; the int8 grid then covers only what varies between positions (the
///   channels' common offset is large in the low-frequency RoPE pairs);
/// - the scale is sqrt(max|k - offset| / max|q|) over the batch, and queries are multiplied by it before
///   they are quantized, so q · k is unchanged while channels with outlying keys (or queries) no longer
///   set the int8 step of their whole block (SmoothQuant's balancing, per head).
final class KVCache {
    let keys: KVStore
    let values: KVStore
    let kvHeads: Int
    let headDim: Int
    let context: Int
    /// [layers, kvHeads, headDim] offsets subtracted from q8 keys; zero until `setKeyTransform`.
    private let keyOffsets: UnsafeMutablePointer<Float>
    /// [layers, kvHeads, headDim] channel scales keys are divided by and queries multiplied by; one until
    /// `setKeyTransform`.
    let keyChannelScales: UnsafeMutablePointer<Float>

    static func paddedHeadDim(_ headDim: Int) -> Int { (headDim + 31) / 32 * 32 }

    /// Whether q8 keys get their offset and channel scales.
    let smoothKeys: Bool

    init(keyType: KVCacheType, valueType: KVCacheType, config: ModelConfig, context: Int, smoothKeys: Bool = true) {
        self.smoothKeys = smoothKeys
        kvHeads = config.kvHeads
        headDim = config.headDim
        self.context = context
        let rows = config.layers * config.kvHeads * context
        keys = KVStore(type: keyType, headDim: headDim, rows: rows)
        values = KVStore(type: valueType, headDim: headDim, rows: rows)
        let count = config.layers * config.kvHeads * headDim
        keyOffsets = calloc(count, 4)!.bindMemory(to: Float.self, capacity: count)
        keyChannelScales = UnsafeMutablePointer<Float>.allocate(capacity: count)
        keyChannelScales.initialize(repeating: 1, count: count)
    }

    deinit {
        free(keyOffsets)
        keyChannelScales.deallocate()
    }

    /// Sets layer `l`'s key transform from the first batch of a sequence: `n` tokens of [kvDim] keys and
    /// [heads * headDim] queries (query head g of KV head h is h * group + g).
    func setKeyTransform(layer l: Int, keys k: UnsafePointer<Float>, queries q: UnsafePointer<Float>, heads: Int, tokens n: Int) {
        guard keys.type == .q8, smoothKeys else { return }
        let kvDim = kvHeads * headDim, offsets = keyOffsets + l * kvDim, scales = keyChannelScales + l * kvDim, group = heads / kvHeads
        offsets.initialize(repeating: 0, count: kvDim)
        scales.initialize(repeating: 1, count: kvDim)
        guard n >= 2 else { return }
        for t in 1..<n {
            for i in 0..<kvDim { offsets[i] += k[t * kvDim + i] }
        }
        let inverse = 1 / Float(n - 1)
        for i in 0..<kvDim { offsets[i] *= inverse }
        // Token by token (rows read in order): kmax[i] = max |k[t, i] - offset[i]|, qmax[i] = max over the query heads
        // of KV head i / headDim of |q[t, head, i % headDim]|.
        withUnsafeTemporaryAllocation(of: Float.self, capacity: 2 * kvDim) { scratch in
            let kmax = scratch.baseAddress!, qmax = kmax + kvDim
            kmax.initialize(repeating: 0, count: 2 * kvDim)
            for t in 1..<n {
                let kt = k + t * kvDim, qt = q + t * heads * headDim
                for i in 0..<kvDim { kmax[i] = max(kmax[i], abs(kt[i] - offsets[i])) }
                for h in 0..<kvHeads {
                    for g in 0..<group {
                        let qh = qt + (h * group + g) * headDim, m = qmax + h * headDim
                        for d in 0..<headDim { m[d] = max(m[d], abs(qh[d])) }
                    }
                }
            }
            for i in 0..<kvDim where kmax[i] > 0 && qmax[i] > 0 { scales[i] = (kmax[i] / qmax[i]).squareRoot() }
        }
    }

    /// Bytes held (keys, values and scales).
    var bytes: Int { keys.bytes + values.bytes }

    /// Row index of (layer, head, position).
    @inline(__always) func row(layer: Int, head: Int, position: Int) -> Int { (layer * kvHeads + head) * context + position }

    /// Stores one token's keys and values ([kvDim] floats each, head after head) at `position`.
    func store(layer: Int, position: Int, keys k: UnsafePointer<Float>, values v: UnsafePointer<Float>, level: KernelLevel) {
        for h in 0..<kvHeads {
            let r = row(layer: layer, head: h, position: position)
            let channel = (layer * kvHeads + h) * headDim
            keys.write(k + h * headDim, row: r, transform: (UnsafePointer(keyOffsets + channel), UnsafePointer(keyChannelScales + channel)), level: level)
            values.write(v + h * headDim, row: r, level: level)
        }
    }
}
