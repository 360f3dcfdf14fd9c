import EdgeLM
import Foundation
import Testing

/// A forward-pass fixture (shared/fixtures/forward-*.json): the prompt, the float64 reference's greedy
/// continuation, and full logits at the first positions of prompt + continuation.
struct GoldenForward {
    let prompt: [Int]
    let greedy: [Int]
    let text: String
    let positions: [(pos: Int, logits: [Float], logsumexp: Float, top10: [Int])]

    init(_ fixture: String) throws {
        let d = try Fixtures.json(fixture) as! [String: Any]
        let g = d["greedy"] as! [String: Any]
        prompt = d["prompt_ids"] as! [Int]
        greedy = g["ids"] as! [Int]
        text = g["full_text"] as! String
        positions = (d["positions"] as! [[String: Any]]).map { p in
            (
                pos: p["pos"] as! Int, logits: (p["logits"] as! [Double]).map(Float.init), logsumexp: Float(p["logsumexp"] as! Double),
                top10: (p["top10"] as! [[Double]]).map { Int($0[0]) }
            )
        }
    }

    struct Measurement {
        /// Max |Δlogit| over the positions relative to max |logit|.
        let relativeError: Float
        /// Leading greedy tokens equal to the reference.
        let agreement: Int
        let ids: [Int]
        let logsumexpError: Float
        let top10Matches: Bool
    }

    /// Greedy generation and teacher-forced logits of `path` against the fixture.
    func measure(_ path: String, threads: Int = 2) throws -> Measurement {
        let lm = try LanguageModel(path: path, threads: threads, keyType: .f32, valueType: .f32)
        #expect(lm.encode(String(text.prefix(16))) == prompt)
        let info = try lm.generate(promptTokens: prompt, parameters: .greedy(maxTokens: greedy.count)) { _, _ in true }
        lm.session.reset()
        let logits = try lm.session.forward(prompt + greedy, logits: .all)
        let vocab = lm.config.vocabSize
        var worst: Float = 0, lseWorst: Float = 0
        var top10 = true
        for p in positions {
            let row = Array(logits[(p.pos * vocab)..<((p.pos + 1) * vocab)])
            let scale = p.logits.map(abs).max()!
            worst = max(worst, zip(row, p.logits).map { abs($0 - $1) }.max()! / scale)
            let m = row.max()!
            let lse = m + log(row.reduce(Float(0)) { $0 + exp($1 - m) })
            lseWorst = max(lseWorst, abs(lse - p.logsumexp) / scale)
            top10 = top10 && Array(row.indices.sorted { row[$0] > row[$1] }.prefix(10)) == p.top10
        }
        return Measurement(
            relativeError: worst, agreement: zip(info.tokens, greedy).prefix { $0 == $1 }.count, ids: info.tokens,
            logsumexpError: lseWorst, top10Matches: top10)
    }
}
