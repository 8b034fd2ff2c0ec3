/// The model's part of a prediction record (docs/contracts.md), prepared once per model so that
/// `weir serve` and `weir score` write the same shape: `,"model":..,"version":..,` and the answer,
/// `"label":..,"scores":[..]` for a classifier or `"value":..` for a regressor.
public final class PredictionFields: Sendable {
    public let isClassification: Bool
    /// Each label as a JSON value: a number when it reads as an integer, else a string.
    private let labelJSON: [[UInt8]]
    /// `,"model":"<name>","version":"<version>",`
    public let modelFragment: [UInt8]

    public init(name: String, version: String, labels: [String]?, isClassification: Bool) {
        self.isClassification = isClassification
        let scratch = JSONWriter()
        labelJSON = (labels ?? []).map { label in
            scratch.reset()
            if Int64(label) != nil { scratch.raw(Array(label.utf8)) } else { scratch.string(label) }
            return scratch.array
        }
        scratch.reset()
        scratch.raw(",\"model\":")
        scratch.string(name)
        scratch.raw(",\"version\":")
        scratch.string(version)
        scratch.raw(UInt8(ascii: ","))
        modelFragment = scratch.array
    }

    /// The class a classifier's row of `width` scores answers: with one column, the positive class
    /// when its probability is at least 0.5; else the first highest score.
    @inline(__always)
    public static func bestClass(_ base: UnsafePointer<Float>, width: Int) -> Int {
        if width == 1 { return base[0] >= 0.5 ? 1 : 0 }
        var best = 0
        for column in 1..<width where base[column] > base[best] { best = column }
        return best
    }

    /// Writes the answer of one row (finite values: callers check first). One probability of the
    /// positive class is written as the scores `[1 - p, p]`.
    public func writeAnswer(_ base: UnsafePointer<Float>, width: Int, into writer: JSONWriter) {
        guard isClassification else {
            writer.raw("\"value\":")
            writer.float(base[0])
            return
        }
        let best = Self.bestClass(base, width: width)
        writer.raw("\"label\":")
        writer.raw(labelJSON[best])
        writer.raw(",\"scores\":[")
        if width == 1 {
            writer.float(1 - base[0])
            writer.raw(UInt8(ascii: ","))
            writer.float(base[0])
        } else {
            for column in 0..<width {
                if column > 0 { writer.raw(UInt8(ascii: ",")) }
                writer.float(base[column])
            }
        }
        writer.raw(UInt8(ascii: "]"))
    }
}

extension PredictionFields {
    /// Writes the record's `id`: the event's (a JSON token as it was, text as a JSON string, or a
    /// number), or null.
    @inline(__always)
    public static func writeID(_ id: EventID?, payload: UnsafeRawBufferPointer?, into writer: JSONWriter) {
        guard let id, let payload else {
            writer.raw("null")
            return
        }
        switch id.form {
        case .jsonToken: writer.raw(UnsafeRawBufferPointer(rebasing: payload[id.start..<id.end]))
        case .text: writer.string(UnsafeRawBufferPointer(rebasing: payload[id.start..<id.end]))
        case .integer: writer.integer(id.integer)
        }
    }
}
