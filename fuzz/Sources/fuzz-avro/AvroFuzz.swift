import FuzzChecks

/// The check itself is `AvroDifferential` (the main package), which `make test` also runs over the
/// committed corpus; any difference from libavro-c is a crash, so libFuzzer keeps the input.
nonisolated(unsafe) private let differential = AvroDifferential(sweepingLibavroLeaks: true)

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzAvro(_ data: UnsafePointer<UInt8>, _ size: Int) -> CInt {
    if let failure = differential.check(UnsafeRawBufferPointer(start: data, count: size)) { fatalError(failure) }
    return 0
}
