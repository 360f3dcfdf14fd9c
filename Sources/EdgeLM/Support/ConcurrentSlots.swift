import Foundation

/// One slot per index, filled by concurrently running work items (each writes only its own index) and
/// read once they have all finished.
final class ConcurrentSlots<Value>: @unchecked Sendable {
    private var slots: [Value?]
    private let lock = NSLock()

    init(count: Int) { slots = Array(repeating: nil, count: count) }

    /// Stores `value` at `index`.
    func set(_ index: Int, _ value: Value) {
        lock.lock()
        slots[index] = value
        lock.unlock()
    }

    /// The slots in index order (nil where nothing was stored).
    var values: [Value?] {
        lock.lock()
        defer { lock.unlock() }
        return slots
    }
}
