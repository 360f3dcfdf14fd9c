/// A candidate merge of two adjacent symbols.
struct PairCandidate {
    let score: Float
    let left: Int
    let right: Int
    let length: Int

    /// True when `self` should merge before `other`.
    func precedes(_ other: PairCandidate) -> Bool {
        score != other.score ? score > other.score : left < other.left
    }
}

/// A binary max-heap of merge candidates.
struct PairHeap {
    private var items: [PairCandidate] = []

    mutating func push(_ c: PairCandidate) {
        items.append(c)
        var i = items.count - 1
        while i > 0 {
            let parent = (i - 1) / 2
            guard items[i].precedes(items[parent]) else { break }
            items.swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> PairCandidate? {
        guard let top = items.first else { return nil }
        let last = items.removeLast()
        if !items.isEmpty {
            items[0] = last
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var best = i
                if l < items.count, items[l].precedes(items[best]) { best = l }
                if r < items.count, items[r].precedes(items[best]) { best = r }
                if best == i { break }
                items.swapAt(i, best)
                i = best
            }
        }
        return top
    }
}
