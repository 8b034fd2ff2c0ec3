import CWeirKernels

/// The CPU kernels a model runs on. Integer layers give bit-identical results on every set (the
/// kernels differ only in speed); fp32 layers may differ in their last bits (another summation order).
public enum KernelSet: Int, Sendable, CaseIterable, Comparable, CustomStringConvertible {
    /// Plain C loops, for any CPU.
    case portable = 0
    /// AVX2 and FMA: exact int8 through `vpmaddwd`, int7 through `vpmaddubsw`.
    case avx2 = 1
    /// AVX-512 with VNNI: int8 and int7 layers through `vpdpbusd` (u8 × s8 summed into int32
    /// exactly), fp32 sixteen lanes wide.
    case avx512 = 2

    /// The widest set this CPU runs.
    public static var best: KernelSet { KernelSet(weir_kernels_best()) }

    /// The sets this CPU runs, narrowest first (tests compare them).
    public static var available: [KernelSet] { allCases.filter { $0 <= best } }

    /// What a request gets here: itself, or the best set when that is narrower.
    public var usable: KernelSet { min(self, KernelSet.best) }

    /// Parses `portable`, `avx2` or `avx512` (as `WEIR_KERNELS` and the benchmarks spell them).
    public init?(name: String) {
        switch name.lowercased() {
        case "portable": self = .portable
        case "avx2": self = .avx2
        case "avx512", "avx-512": self = .avx512
        default: return nil
        }
    }

    /// The setting's spelling: `portable`, `avx2` or `avx512`.
    public var name: String {
        switch self {
        case .portable: "portable"
        case .avx2: "avx2"
        case .avx512: "avx512"
        }
    }

    public var description: String {
        switch self {
        case .portable: "portable"
        case .avx2: "AVX2"
        case .avx512: "AVX-512 VNNI"
        }
    }

    /// The smallest dense layer (multiply-adds per row) that gains from int8 on this set, where
    /// `ModelOptions.int8MinimumMultiplyAdds` leaves it to the set (measured with `make bench`): with
    /// VNNI even a 32 × 32 layer does; with AVX2, quantizing a row costs more than fp32 saves below 4,096.
    public var int8MinimumMultiplyAdds: Int { self == .avx512 ? 1024 : 4096 }

    /// Whether this set's 7-bit kernel does more multiply-adds per cycle than its 8-bit one (AVX2's
    /// `vpmaddubsw` pre-add; VNNI runs 7-bit operands at the 8-bit rate).
    public var hasFasterSevenBitKernel: Bool { self != .avx512 }

    public static func < (lhs: KernelSet, rhs: KernelSet) -> Bool { lhs.rawValue < rhs.rawValue }

    init(_ c: weir_kernels_t) { self = KernelSet(rawValue: Int(c.rawValue)) ?? .portable }

    /// The C enumeration value.
    var c: weir_kernels_t { weir_kernels_t(rawValue: UInt32(rawValue)) }
}
