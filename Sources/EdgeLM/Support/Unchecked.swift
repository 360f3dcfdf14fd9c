import Foundation

/// Wraps a value (typically a raw pointer into memory whose lifetime the caller guarantees) so it may be
/// captured by concurrently executing work that touches disjoint parts of it.
struct UncheckedSendable<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// Runs `body` on the bytes of `data` and rethrows its typed error.
func withBytes<C: ContiguousBytes>(of data: C, _ body: (UnsafeRawBufferPointer) throws(EdgeLMError) -> Void) throws(EdgeLMError) {
    let failure = data.withUnsafeBytes { (buf) -> EdgeLMError? in
        do throws(EdgeLMError) { try body(buf); return nil } catch { return error }
    }
    if let failure { throw failure }
}
