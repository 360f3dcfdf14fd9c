import Foundation
import Testing
import CEdgeKernels
@testable import EdgeLM

/// Every SIMD level available on this CPU against the scalar Swift references.
@Suite struct KernelTests {
    enum Pattern: CaseIterable { case random, extremes, zeros, alternating }

    func weights(_ scheme: TensorScheme, rows: Int, blocks: Int, pattern: Pattern, rng: inout TestRandom) -> [UInt8] {
        let bytes = rows * blocks * scheme.blockBytes
        if scheme.hasHighPlanes {
            // Nibbles, then the plane: extremes are code 0 (the most negative), zeros the codes of 0 (q5o 16, q6 32),
            // alternating the largest codes in the low nibbles and the smallest in the high ones.
            return (0..<bytes).map { i in
                let plane = i % scheme.blockBytes >= 16
                switch pattern {
                case .random: return UInt8(truncatingIfNeeded: rng.next())
                case .extremes: return 0
                case .zeros: return plane ? (scheme == .q5o ? 0xFF : 0xAA) : 0
                case .alternating: return plane ? (scheme == .q5o ? 0x55 : 0x0F) : 0x0F
                }
            }
        }
        let scheme = scheme.isFourBit ? .q4 : scheme  // the same nibbles
        return (0..<bytes).map { i in
            switch (pattern, scheme) {
            case (.random, .q4): return UInt8(truncatingIfNeeded: rng.next())
            case (.random, _): return UInt8(bitPattern: Int8(Int(rng.next() % 255) - 127))
            case (.extremes, .q4): return 0x00  // both nibbles -8
            case (.extremes, _): return UInt8(bitPattern: i % 3 == 0 ? -127 : 127)
            case (.zeros, .q4): return 0x88
            case (.zeros, _): return 0
            case (.alternating, .q4): return 0xF0  // 7 and -8
            case (.alternating, _): return UInt8(bitPattern: i % 2 == 0 ? 127 : -127)
            }
        }
    }

    func activations(tokens: Int, blocks: Int, pattern: Pattern, rng: inout TestRandom) -> ([Int8], [Float]) {
        let codes: [Int8] = (0..<(tokens * blocks * 32)).map { i in
            switch pattern {
            case .random: return Int8(Int(rng.next() % 255) - 127)
            case .extremes: return i % 5 == 0 ? 127 : -127
            case .zeros: return 0
            case .alternating: return i % 2 == 0 ? -127 : 127
            }
        }
        return (codes, (0..<(tokens * blocks)).map { _ in rng.uniform() * 0.1 + 1e-3 })
    }

    /// Random scale words: f16 scales (q4n: of either sign), for q4a 12-bit scales with random zero points, for
    /// q4o and q5o pairs of an f16 scale and an f16 offset of either sign, for q6 pairs of f16 scales of either sign.
    func scaleWords(_ scheme: TensorScheme, count: Int, rng: inout TestRandom) -> [UInt16] {
        if scheme == .q6 {
            return (0..<(2 * count)).map { _ in
                let s = rng.uniform() * 0.05 + 1e-3
                return HalfFloat.fromFloat(rng.next() % 2 == 0 ? s : -s)
            }
        }
        if scheme == .q4o || scheme == .q5o {
            return (0..<count).flatMap { _ in
                [HalfFloat.fromFloat(rng.uniform() * 0.05 + 1e-3), HalfFloat.fromFloat((rng.uniform() - 0.5) * 0.8)]
            }
        }
        return (0..<count).map { _ in
            let s = rng.uniform() * 0.05 + 1e-3
            switch scheme {
            case .q4a: return edge_q4a_word(s, Int32(rng.next() % 16))
            case .q4n, .iq4nl: return HalfFloat.fromFloat(rng.next() % 2 == 0 ? s : -s)
            default: return HalfFloat.fromFloat(s)
            }
        }
    }

    @Test(
        arguments: [TensorScheme.q8, .q4, .q4a, .q4n, .q4o, .iq4nl, .q5o, .q6],
        [(1, 1, 1), (7, 3, 1), (13, 6, 2), (33, 64, 5), (5, 9, 0), (6, 7, 13), (70, 5, 3)])
    func matmulMatchesReference(scheme: TensorScheme, shape: (rows: Int, blocks: Int, tokens: Int)) throws {
        var rng = TestRandom(seed: UInt64(shape.rows * 131 + shape.blocks))
        let tokens = max(1, shape.tokens)
        for pattern in Pattern.allCases {
            for groupBlocks in scheme == .q6 ? [1] : Set([1, 2, 3, shape.blocks]) {
                let w = weights(scheme, rows: shape.rows, blocks: shape.blocks, pattern: pattern, rng: &rng)
                let groups = (shape.blocks + groupBlocks - 1) / groupBlocks
                let scales = scaleWords(scheme, count: shape.rows * groups, rng: &rng)
                let (x, xs) = activations(tokens: tokens, blocks: shape.blocks, pattern: pattern, rng: &rng)
                var expected = [Float](repeating: 0, count: shape.rows * tokens)
                w.withUnsafeBytes { wp in
                    ReferenceKernels.matmulQuantized(
                        scheme: scheme, weights: wp.baseAddress!, scales: scales, blocksPerRow: shape.blocks,
                        blocksPerGroup: groupBlocks, rows: 0..<shape.rows, x: x, xs: xs, tokens: tokens,
                        out: &expected, rowStride: 1, tokenStride: shape.rows)
                }
                for level in KernelLevel.supported {
                    var out = [Float](repeating: .nan, count: shape.rows * tokens)
                    w.withUnsafeBytes { wp in
                        IntegerKernels.matmul(
                            level, kernel: SchemeKernel(scheme), weights: wp.baseAddress!, scales: scales, blocksPerRow: shape.blocks,
                            blocksPerGroup: groupBlocks, rows: 0..<shape.rows, x: x, xs: xs, tokens: tokens,
                            out: &out, rowStride: 1, tokenStride: shape.rows)
                    }
                    for i in 0..<out.count {
                        // Only the order of float additions differs: allow a few ulps of the magnitude summed.
                        let tolerance = max(
                            1e-5 * max(1, abs(expected[i])) * Float(shape.blocks),
                            4 * Float(shape.blocks + 8) * 1.2e-7
                                * magnitude(scheme, w, scales, x, xs, shape.blocks, groupBlocks, row: i % shape.rows, token: i / shape.rows))
                        #expect(abs(out[i] - expected[i]) <= tolerance, "\(level) \(pattern) group \(groupBlocks) element \(i)")
                    }
                }
            }
        }
    }

    /// Σ |terms| of one output: |code x| times both scales per element (q4n: |level x|), plus for q4a the
    /// |8 - z| |x| its zero point adds to the q4 kernel's sum; what bounds the float rounding, whatever the order of additions.
    func magnitude(
        _ scheme: TensorScheme, _ w: [UInt8], _ scales: [UInt16], _ x: [Int8], _ xs: [Float], _ blocks: Int, _ groupBlocks: Int,
        row r: Int, token t: Int
    ) -> Float {
        let groups = (blocks + groupBlocks - 1) / groupBlocks
        var sum: Float = 0
        for b in 0..<blocks {
            if scheme.hasHighPlanes {
                // q5o: d |c| and the offset's |m + 16 d| add up separately; q6: |s_h c|.
                let first = HalfFloat.toFloat(scales[2 * (r * groups + b / groupBlocks)]),
                    second = HalfFloat.toFloat(scales[2 * (r * groups + b / groupBlocks) + 1])
                let block = w.withUnsafeBytes { Array($0[((r * blocks + b) * scheme.blockBytes)...].prefix(scheme.blockBytes)) }
                for i in 0..<32 {
                    let n = Float(block.withUnsafeBytes { Quantizer.unsignedCode($0, i, highBits: scheme.traits!.highBits) })
                    let term = scheme == .q5o ? abs(first) * abs(n - 16) + abs(second + 16 * first) : abs(i < 16 ? first : second) * abs(n - 32)
                    sum += xs[t * blocks + b] * term * abs(Float(x[(t * blocks + b) * 32 + i]))
                }
                continue
            }
            if scheme == .q4o {
                // The q4 kernel's d |n - 8| and the offset's |m + 8 d| add up separately.
                let d = HalfFloat.toFloat(scales[2 * (r * groups + b / groupBlocks)]), m = HalfFloat.toFloat(scales[2 * (r * groups + b / groupBlocks) + 1])
                for i in 0..<32 {
                    let byte = w[(r * blocks + b) * 16 + i % 16], n = Float(i < 16 ? byte & 0x0F : byte >> 4)
                    sum += xs[t * blocks + b] * (abs(d) * abs(n - 8) + abs(m + 8 * d)) * abs(Float(x[(t * blocks + b) * 32 + i]))
                }
                continue
            }
            let word = scales[r * groups + b / groupBlocks], s = abs(scheme.traits!.groupCodes!.scale(word)) * xs[t * blocks + b]
            for i in 0..<32 {
                let xi = abs(Float(x[(t * blocks + b) * 32 + i]))
                switch scheme {
                case .q8: sum += s * abs(Float(Int8(bitPattern: w[(r * blocks + b) * 32 + i]))) * xi
                default:
                    let byte = w[(r * blocks + b) * 16 + i % 16], n = Float(i < 16 ? byte & 0x0F : byte >> 4)
                    let code =
                        scheme == .q4n || scheme == .iq4nl
                        ? abs(Float(scheme.traits!.groupCodes!.code(Int(n), word)))
                        : abs(n - 8) + (scheme == .q4a ? abs(8 - Float(word & 15)) : 0)
                    sum += s * code * xi
                }
            }
        }
        return sum
    }

    /// Bytes placed so that they end exactly where an inaccessible page begins: any read past the end faults.
    final class GuardedBuffer {
        let base: UnsafeMutableRawPointer
        let mapped: Int
        let pointer: UnsafeMutableRawPointer

        init(_ bytes: [UInt8]) {
            let page = Int(sysconf(Int32(_SC_PAGESIZE)))
            let dataPages = (bytes.count + page - 1) / page
            mapped = (dataPages + 1) * page
            base = mmap(nil, mapped, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)!
            mprotect(base + dataPages * page, page, PROT_NONE)
            pointer = base + dataPages * page - bytes.count
            bytes.withUnsafeBytes { pointer.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        }

        deinit { munmap(base, mapped) }
    }

    /// The kernels never read past the last weight block or the last activation block (odd block counts
    /// exercise the masked half pair).
    @Test(arguments: [TensorScheme.q8, .q4, .q4a, .q4n, .q4o, .iq4nl, .q5o, .q6], [1, 3, 9])
    func kernelsStayInsideTheirBuffers(scheme: TensorScheme, blocks: Int) {
        var rng = TestRandom(seed: 17)
        let rows = 3
        let w = GuardedBuffer(weights(scheme, rows: rows, blocks: blocks, pattern: .random, rng: &rng))
        let (x, xs) = activations(tokens: 5, blocks: blocks, pattern: .random, rng: &rng)
        let gx = GuardedBuffer(x.map { UInt8(bitPattern: $0) })
        let scales = [UInt16](repeating: HalfFloat.fromFloat(0.01), count: rows * blocks * scheme.wordsPerGroup)
        for level in KernelLevel.supported {
            for group in scheme == .q6 ? [1] : [1, blocks] {
                var out = [Float](repeating: 0, count: rows * 5)
                IntegerKernels.matmul(
                    level, kernel: SchemeKernel(scheme), weights: w.pointer, scales: scales, blocksPerRow: blocks, blocksPerGroup: group,
                    rows: 0..<rows, x: gx.pointer.assumingMemoryBound(to: Int8.self), xs: xs, tokens: 5,
                    out: &out, rowStride: 1, tokenStride: rows)
                #expect(out.allSatisfy { $0.isFinite })
            }
        }
    }

    @Test func rowRangesWriteOnlyTheirRows() {
        var rng = TestRandom(seed: 5)
        let rows = 10, blocks = 2
        let w = weights(.q8, rows: rows, blocks: blocks, pattern: .random, rng: &rng)
        let scales = [UInt16](repeating: HalfFloat.fromFloat(0.01), count: rows)
        let (x, xs) = activations(tokens: 1, blocks: blocks, pattern: .random, rng: &rng)
        for level in KernelLevel.supported {
            var out = [Float](repeating: -1, count: rows)
            w.withUnsafeBytes { wp in
                IntegerKernels.matmul(
                    level, kernel: SchemeKernel(.q8), weights: wp.baseAddress!, scales: scales, blocksPerRow: blocks, blocksPerGroup: blocks,
                    rows: 3..<7, x: x, xs: xs, tokens: 1, out: &out, rowStride: 1, tokenStride: rows)
            }
            #expect(out[0..<3].allSatisfy { $0 == -1 } && out[7...].allSatisfy { $0 == -1 } && out[3..<7].allSatisfy { $0 != -1 })
        }
    }

    @Test func activationQuantizationIsBitExact() {
        var rng = TestRandom(seed: 6)
        var inputs: [[Float]] = [rng.normals(32 * 9), [Float](repeating: 0, count: 64), (0..<64).map { Float($0) - 31.5 }]
        inputs.append((0..<32).map { $0 % 2 == 0 ? 1e-30 : -3e38 })
        inputs.append((0..<32).map { Float($0) * 0.5 / 127 * 127 })  // exact .5 ties
        for x in inputs {
            let blocks = x.count / 32
            var refCodes = [Int8](repeating: 0, count: x.count), refScales = [Float](repeating: 0, count: blocks)
            ReferenceKernels.quantizeQ8Blocks(x, nblocks: blocks, codes: &refCodes, scales: &refScales)
            #expect(refCodes.allSatisfy { $0 >= -127 })
            for level in KernelLevel.supported {
                var codes = [Int8](repeating: 99, count: x.count), scales = [Float](repeating: -1, count: blocks)
                IntegerKernels.quantizeQ8Blocks(level, x, nblocks: blocks, codes: &codes, scales: &scales)
                #expect(codes == refCodes, "\(level)")
                #expect(scales == refScales, "\(level)")
            }
        }
    }

    @Test(arguments: [1, 7, 16, 31, 32, 33, 100, 1000])
    func floatDotAndMatmulMatchReference(n: Int) {
        var rng = TestRandom(seed: UInt64(n))
        let a = rng.normals(n), b = rng.normals(n)
        let ref = ReferenceKernels.dot(a, b, count: n)
        let magnitude = zip(a, b).reduce(Float(0)) { $0 + abs($1.0 * $1.1) }
        #expect(abs(FloatKernels.dot(a, b, count: n) - ref) <= 1e-6 * magnitude + 1e-7)
        let rows = 3
        let w = rng.normals(rows * n), x = rng.normals(2 * n)
        var simd = [Float](repeating: 0, count: rows * 2), scalar = simd
        FloatKernels.matmul(weights: w, cols: n, rows: 0..<rows, x: x, tokens: 2, out: &simd, rowStride: 1, tokenStride: rows)
        ReferenceKernels.matmulFloat(weights: w, cols: n, rows: 0..<rows, x: x, tokens: 2, out: &scalar, rowStride: 1, tokenStride: rows)
        for i in 0..<simd.count { #expect(abs(simd[i] - scalar[i]) <= 1e-5 * Float(n).squareRoot() * 4) }
    }

    @Test func detectsTheBestLevelOfThisMachine() {
        #if arch(x86_64)
            let flags = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            let has = { (flag: String) in flags.split(whereSeparator: { $0 == " " || $0 == "\n" || $0 == "\t" }).contains { $0 == flag } }
            let avx2 = has("avx2") && has("fma") && has("f16c")
            let avx512 = avx2 && has("avx512f") && has("avx512bw") && has("avx512vl") && has("avx512_vnni")
            let avxVNNI = avx2 && has("avx_vnni")
            #expect(KernelLevel.detected == (avx512 ? .avx512vnni : avxVNNI ? .avxVNNI : avx2 ? .avx2 : .generic))
            #expect(
                KernelLevel.avx2.isSupported == avx2 && KernelLevel.avxVNNI.isSupported == avxVNNI
                    && KernelLevel.avx512vnni.isSupported == avx512)
            #expect(!KernelLevel.neon.isSupported && !KernelLevel.dotprod.isSupported && !KernelLevel.i8mm.isSupported)
        #elseif arch(arm64)
            #expect(KernelLevel.neon.isSupported && [.neon, .dotprod, .i8mm].contains(KernelLevel.detected))
            #expect(!KernelLevel.avx2.isSupported)
        #else
            #expect(KernelLevel.detected == .generic)
        #endif
    }

    @Test func environmentForcesOrRefusesALevel() throws {
        #expect(try KernelLevel.selected(environment: [:]) == .detected)
        #expect(try KernelLevel.selected(environment: ["EDGELM_KERNELS": ""]) == .detected)
        for level in KernelLevel.supported {
            #expect(try KernelLevel.selected(environment: ["EDGELM_KERNELS": level.name]) == level)
        }
        #expect(
            throws: EdgeLMError.invalidArgument("EDGELM_KERNELS: unknown kernel level 'sse9' (one of: generic, avx2, avx-vnni, avx512, neon, dotprod, i8mm)")
        ) {
            try KernelLevel.selected(environment: ["EDGELM_KERNELS": "sse9"])
        }
        let missing = try #require(KernelLevel.allCases.first { !$0.isSupported })
        #expect {
            try KernelLevel.selected(environment: ["EDGELM_KERNELS": missing.name])
        } throws: { error in
            "\(error)".contains("'\(missing.name)' is not supported by this CPU")
        }
    }

    @Test func threadPoolCoversEveryIndexOnce() {
        for threads in [1, 2, 3] {
            let pool = ThreadPool(threads: threads)
            for count in [0, 1, 5, 1000] {
                let hits = UnsafeMutablePointer<Int>.allocate(capacity: max(1, count))
                hits.initialize(repeating: 0, count: max(1, count))
                pool.parallelFor(count) { range in for i in range { hits[i] += 1 } }
                #expect((0..<count).allSatisfy { hits[$0] == 1 }, "\(threads) threads, \(count) items")
                hits.deallocate()
            }
        }
    }
}
