import WeirCodec
import WeirControl
import WeirDrift

/// The worker's drift side: feeds each answered batch into the open window and writes a drift
/// record (docs/contracts.md) when it closes. Runs on the poll thread; reads the batch matrix the
/// model already used, so nothing is decoded twice.
final class DriftTap {
    let window: DriftWindow
    let writer = JSONWriter(capacity: 16_384)
    /// Avro drift records (`output.format avro`).
    let avro = AvroRecordWriter(capacity: 16_384)
    let records: OutputRecords
    /// Rows of the batch being answered that joined the window; their values are added in column
    /// runs by `flush` (before the window closes, and after the batch).
    @exclusivity(unchecked) private var rows: [Int32] = []
    let modelName: String
    let modelVersion: String
    let referenceID: String
    let workerID: String
    private let featureNames: [String]

    init(bundle: ModelBundle, reference: DriftReference, settings: WorkerSettings, referenceID: String, records: OutputRecords,
         log: (String) -> Void) {
        self.records = records
        let size = settings.driftWindowEvents ?? reference.thresholds.windowEvents
        var reference = reference
        let calibrated = reference.thresholds.windowEvents
        if size != calibrated {
            // Thresholds depend on the window size: recalibrate from the reference samples.
            reference.thresholds = DriftReference.calibrate(reference.features + reference.predictions, windowEvents: size)
            log("drift: thresholds recalibrated for windows of \(size) events (reference.json has them for \(calibrated))")
        }
        window = DriftWindow(reference: reference, maxEvents: size, maxMs: settings.driftWindowMs)
        modelName = bundle.manifest.name
        modelVersion = bundle.manifest.version
        self.referenceID = referenceID
        workerID = settings.workerID
        featureNames = bundle.manifest.inputs.map(\.name)
    }

    /// The batch whose answered rows `observe` notes: its feature matrix, defaulted flags, outputs.
    struct Batch {
        let features: UnsafeMutablePointer<Float>
        let missing: UnsafeMutablePointer<Bool>
        let outputs: AnswerWriter.Outputs
    }

    /// Notes one answered event. When its timestamp falls past the open window, the window is
    /// closed first (rows noted so far are added) and `publish` is called with its record in `writer`.
    func observe(row: Int32, timestampMs: Int64?, topic: String, partition: Int32, offset: Int64, batch: Batch,
                 publish: (WindowDrift) -> Void) {
        if window.closesBefore(timestampMs: timestampMs) {
            flush(batch)
            if let result = closeWindow() { publish(result) }
        }
        window.noteEvent(timestampMs: timestampMs, topic: topic, partition: partition, offset: offset)
        rows.append(row)
    }

    /// Adds the noted rows' features and outputs to the open window.
    func flush(_ batch: Batch) {
        guard !rows.isEmpty else { return }
        rows.withUnsafeBufferPointer { indices in
            window.addFeatureRows(batch.features, rows: indices, missing: batch.missing)
            window.addPredictionRows(batch.outputs.values.baseAddress!, stride: batch.outputs.width, rows: indices)
        }
        rows.removeAll(keepingCapacity: true)
    }

    /// Closes the open window (nil when it holds nothing) and writes its record into `writer`.
    func closeWindow() -> WindowDrift? {
        guard !window.isEmpty else { return nil }
        let result = window.close()
        if records.format == .avro {
            encodeAvro(result, schemaID: records.driftSchemaID.load(ordering: .relaxed))
        } else {
            encode(result)
        }
        return result
    }

    /// The last closed window's record, in the worker's output format.
    var record: UnsafeRawBufferPointer { records.format == .avro ? avro.bytes : writer.bytes }

    /// Writes the record of a closed window into `writer`.
    func encode(_ drift: WindowDrift) {
        writer.reset()
        writer.raw("{\"model\":")
        writer.string(modelName)
        writer.raw(",\"version\":")
        writer.string(modelVersion)
        writer.raw(",\"reference\":")
        writer.string(referenceID)
        writer.raw(",\"worker\":")
        writer.string(workerID)
        writer.raw(",\"window\":{\"start\":")
        writer.integer(drift.startMs)
        writer.raw(",\"end\":")
        writer.integer(drift.endMs)
        writer.raw(",\"events\":")
        writer.integer(Int64(drift.events))
        writer.raw(",\"offsets\":{")
        for (topicIndex, (topic, partitions)) in drift.offsets.sorted(by: { $0.key < $1.key }).enumerated() {
            if topicIndex > 0 { writer.raw(UInt8(ascii: ",")) }
            writer.string(topic)
            writer.raw(":{")
            for (index, (partition, range)) in partitions.sorted(by: { $0.key < $1.key }).enumerated() {
                if index > 0 { writer.raw(UInt8(ascii: ",")) }
                writer.raw(UInt8(ascii: "\""))
                writer.integer(Int64(partition))
                writer.raw("\":{\"first\":")
                writer.integer(range.first)
                writer.raw(",\"last\":")
                writer.integer(range.last)
                writer.raw(UInt8(ascii: "}"))
            }
            writer.raw(UInt8(ascii: "}"))
        }
        writer.raw("}},\"features\":")
        columns(drift.features)
        writer.raw(",\"prediction\":")
        columns(drift.predictions)
        writer.raw(",\"drifted_share\":")
        writer.double(drift.driftedShare)
        writer.raw(",\"drift\":")
        writer.raw(drift.drift ? "true" : "false")
        writer.raw(UInt8(ascii: "}"))
    }

    private func columns(_ list: [ColumnDrift]) {
        writer.raw(UInt8(ascii: "{"))
        for (index, column) in list.enumerated() {
            if index > 0 { writer.raw(UInt8(ascii: ",")) }
            writer.string(column.name)
            writer.raw(":{\"n\":")
            writer.integer(Int64(column.n))
            writer.raw(",\"missing\":")
            writer.integer(Int64(column.missing))
            writer.raw(",\"nan\":")
            writer.integer(Int64(column.nan))
            writer.raw(",\"out_of_range\":")
            writer.integer(Int64(column.outOfRange))
            for (name, value) in [("mean", column.mean), ("std", column.std), ("psi", column.psi), ("js", column.js),
                                  ("wasserstein", column.wasserstein), ("ks", column.ks), ("ks_p", column.ksP)] {
                writer.raw(",\"")
                writer.raw(Array(name.utf8))
                writer.raw("\":")
                writer.double(value)
            }
            if let chiSquare = column.chiSquare, let p = column.chiSquareP, let unseen = column.unseenShare {
                // A categorical feature: its test and the share of categories unseen in training.
                for (name, value) in [("chi_square", chiSquare), ("chi_square_p", p), ("unseen_share", unseen)] {
                    writer.raw(",\"")
                    writer.raw(Array(name.utf8))
                    writer.raw("\":")
                    writer.double(value)
                }
            }
            writer.raw(",\"drift\":")
            writer.raw(column.drift ? "true" : "false")
            writer.raw(",\"threshold\":")
            writer.double(column.threshold)
            writer.raw(UInt8(ascii: "}"))
        }
        writer.raw(UInt8(ascii: "}"))
    }
}
