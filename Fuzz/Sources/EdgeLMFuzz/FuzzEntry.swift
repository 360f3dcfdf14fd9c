import EdgeLM
import Foundation

// libFuzzer harness: EDGELM_FUZZ_TARGET names the reader (one of `UntrustedInput`'s cases); any thrown
// EdgeLMError is an accepted outcome, a crash or sanitizer report is a finding. libFuzzer supplies main().

/// The reader under test.
let target: UntrustedInput = {
    guard let t = UntrustedInput(rawValue: ProcessInfo.processInfo.environment["EDGELM_FUZZ_TARGET"] ?? "") else {
        FileHandle.standardError.write(Data("set EDGELM_FUZZ_TARGET to one of: \(UntrustedInput.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOne(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    _ = try? target.parse(UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
