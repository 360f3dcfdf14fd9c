/// Running mean and variance (Welford), in Double.
public struct RunningStats: Sendable, Codable {
    public private(set) var count = 0
    public private(set) var mean = 0.0
    private var m2 = 0.0

    /// An empty accumulator.
    public init() {}

    /// Adds one value.
    public mutating func add(_ x: Double) {
        count += 1
        let d = x - mean
        mean += d / Double(count)
        m2 += d * (x - mean)
    }

    /// Sample variance.
    public var variance: Double { count > 1 ? m2 / Double(count - 1) : 0 }
    /// Standard error of the mean.
    public var standardError: Double { count > 1 ? (variance / Double(count)).squareRoot() : 0 }
}

/// Running covariance of two series (for the uncertainty of PPL differences).
struct RunningCovariance: Sendable {
    private(set) var a = RunningStats()
    private(set) var b = RunningStats()
    private var comoment = 0.0

    mutating func add(_ x: Double, _ y: Double) {
        let dx = x - a.mean
        a.add(x)
        b.add(y)
        comoment += dx * (y - b.mean)
    }

    var covariance: Double { a.count > 1 ? comoment / Double(a.count - 1) : 0 }
}

/// The `q`-th percentile (0...100) of sorted values, by linear interpolation.
func percentile(_ sorted: [Double], _ q: Double) -> Double {
    guard !sorted.isEmpty else { return 0 }
    let pos = q / 100 * Double(sorted.count - 1)
    let lo = Int(pos.rounded(.down)), hi = min(sorted.count - 1, lo + 1)
    return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - Double(lo))
}
