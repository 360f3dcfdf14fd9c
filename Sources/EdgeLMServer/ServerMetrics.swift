import Foundation

/// Counters for `/metrics`, updated by the scheduler and the HTTP handlers.
final class ServerMetrics: @unchecked Sendable {
    private let lock = NSLock()
    private var counters: [String: Double] = [:]

    func add(_ name: String, _ value: Double = 1) { lock.withLock { counters[name, default: 0] += value } }
    func set(_ name: String, _ value: Double) { lock.withLock { counters[name] = value } }
    func value(_ name: String) -> Double { lock.withLock { counters[name] ?? 0 } }
    var snapshot: [String: Double] { lock.withLock { counters } }
}
