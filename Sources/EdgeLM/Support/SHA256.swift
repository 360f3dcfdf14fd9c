import CEdgeKernels

/// SHA-256 (FIPS 180-4), used to record the provenance of converted checkpoints. Whole blocks go through
/// the CPU's SHA instructions when it has them (`edge_sha256_blocks`); this Swift code is the reference
/// and the fallback.
public struct SHA256 {
    /// The 64 round constants (one table, in the C library, for both implementations).
    private static var k: UnsafePointer<UInt32> { edge_sha256_constants() }

    private var h: [UInt32] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
    ]
    private var pending: [UInt8] = []
    private var length: UInt64 = 0

    private let accelerated: Bool

    /// An empty hash state; `accelerated: false` keeps to the Swift reference.
    public init(accelerated: Bool = true) {
        self.accelerated = accelerated
    }

    /// Adds `data` to the hash.
    public mutating func update(_ data: UnsafeRawBufferPointer) {
        length &+= UInt64(data.count)
        var i = 0
        if !pending.isEmpty {
            let take = min(64 - pending.count, data.count)
            pending.append(contentsOf: data[0..<take])
            i = take
            if pending.count == 64 {
                pending.withUnsafeBytes { compress($0.baseAddress!) }
                pending.removeAll(keepingCapacity: true)
            }
        }
        let whole = (data.count - i) / 64
        if whole > 0, accelerated,
            h.withUnsafeMutableBufferPointer({ state in
                edge_sha256_blocks(state.baseAddress!, data.baseAddress!.assumingMemoryBound(to: UInt8.self) + i, Int64(whole)) == 1
            })
        {
            i += whole * 64
        }
        while i + 64 <= data.count {
            compress(data.baseAddress! + i)
            i += 64
        }
        if i < data.count { pending.append(contentsOf: data[i...]) }
    }

    /// Finishes the hash and returns it as 64 lowercase hex digits.
    public mutating func finalizeHex() -> String {
        let bitLength = length &* 8
        var tail: [UInt8] = pending + [0x80]
        while tail.count % 64 != 56 { tail.append(0) }
        for shift in stride(from: 56, through: 0, by: -8) { tail.append(UInt8(truncatingIfNeeded: bitLength >> UInt64(shift))) }
        tail.withUnsafeBytes { buf in
            for block in stride(from: 0, to: buf.count, by: 64) { compress(buf.baseAddress! + block) }
        }
        pending.removeAll()
        return h.map { word in
            let s = String(word, radix: 16)
            return String(repeating: "0", count: 8 - s.count) + s
        }.joined()
    }

    /// The hex SHA-256 of `data`.
    public static func hex(_ data: UnsafeRawBufferPointer) -> String {
        var state = SHA256()
        state.update(data)
        return state.finalizeHex()
    }

    private mutating func compress(_ block: UnsafeRawPointer) {
        // The message schedule lives on the stack: hashing a checkpoint runs this once per 64 bytes.
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 64) { w in
            for t in 0..<16 { w[t] = UInt32(bigEndian: block.loadUnaligned(fromByteOffset: t * 4, as: UInt32.self)) }
            for t in 16..<64 {
                let s0 = rotr(w[t - 15], 7) ^ rotr(w[t - 15], 18) ^ (w[t - 15] >> 3)
                let s1 = rotr(w[t - 2], 17) ^ rotr(w[t - 2], 19) ^ (w[t - 2] >> 10)
                w[t] = w[t - 16] &+ s0 &+ w[t - 7] &+ s1
            }
            rounds(UnsafePointer(w.baseAddress!))
        }
    }

    private mutating func rounds(_ w: UnsafePointer<UInt32>) {
        var a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], hh = h[7]
        for t in 0..<64 {
            let s1 = rotr(e, 6) ^ rotr(e, 11) ^ rotr(e, 25)
            let ch = (e & f) ^ (~e & g)
            let t1 = hh &+ s1 &+ ch &+ Self.k[t] &+ w[t]
            let s0 = rotr(a, 2) ^ rotr(a, 13) ^ rotr(a, 22)
            let maj = (a & b) ^ (a & c) ^ (b & c)
            let t2 = s0 &+ maj
            hh = g; g = f; f = e; e = d &+ t1; d = c; c = b; b = a; a = t1 &+ t2
        }
        h[0] &+= a; h[1] &+= b; h[2] &+= c; h[3] &+= d; h[4] &+= e; h[5] &+= f; h[6] &+= g; h[7] &+= hh
    }

    @inline(__always) private func rotr(_ x: UInt32, _ n: UInt32) -> UInt32 { (x >> n) | (x << (32 - n)) }
}
