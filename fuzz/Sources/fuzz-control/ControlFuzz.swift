import FuzzChecks

/// The checks themselves are `ControlProperties` (the main package), which `make test` also runs
/// over the committed corpus; any broken property is a crash, so libFuzzer keeps the input.
nonisolated(unsafe) private let properties = ControlProperties()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzControl(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let failure = properties.check(UnsafeRawBufferPointer(start: data, count: size)) { fatalError(failure) }
    return 0
}
