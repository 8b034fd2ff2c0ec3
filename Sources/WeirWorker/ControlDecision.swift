import Foundation
import WeirCodec
import WeirControl
import WeirKafka

/// A worker's automatic decision about the bundle on trial (docs/control.md): a rollback because
/// the trial failed its health bounds or the outcome test, or a promotion the outcome test made.
/// Published on the status topic (key `weir-decision/<model>`), it moves the whole group: every
/// worker applies it when it names the trial it is running,
/// and a worker that restarts finds it there and does not try the candidate again. It names the
/// trial by its bundle and the sequence of the deploy that began it.
struct ControlDecision: Equatable {
    /// What decided: a health bound (model-error share, p99 inference time) or the outcome test.
    enum Source: String {
        case health, outcomes
    }

    var model: String
    var action: ControlAction
    var source: Source
    /// The bundle on trial the decision is about.
    var trial: BundleRef
    /// The sequence of the deploy that began the trial (`RolloutState.trialSince`).
    var trialSince: Int64
    var worker: String
    var reason: String
    /// The figures behind it (events seen, error share, p99, outcomes...).
    var evidence: [(String, Double)]

    static func == (a: ControlDecision, b: ControlDecision) -> Bool {
        a.model == b.model && a.action == b.action && a.source == b.source && a.trial == b.trial && a.trialSince == b.trialSince && a.worker == b.worker
            && a.reason == b.reason && a.evidence.map(\.0) == b.evidence.map(\.0) && a.evidence.map(\.1) == b.evidence.map(\.1)
    }

    static func key(model: String) -> [UInt8] { Array("weir-decision/\(model)".utf8) }

    /// The status-topic record.
    func record() -> [UInt8] {
        let writer = JSONWriter(capacity: 768)
        writer.raw("{\"type\":\"decision\",\"worker\":")
        writer.string(worker)
        writer.raw(",\"model\":")
        writer.string(model)
        writer.raw(",\"action\":")
        writer.string(action.rawValue)
        writer.raw(",\"source\":")
        writer.string(source.rawValue)
        writer.raw(",\"trial\":{\"version\":")
        writer.string(trial.version)
        writer.raw(",\"bundle\":")
        writer.string(trial.location)
        writer.raw(",\"sha256\":")
        writer.string(trial.sha256)
        writer.raw("},\"trial_since\":")
        writer.integer(trialSince)
        writer.raw(",\"reason\":")
        writer.string(reason)
        writer.raw(",\"evidence\":{")
        for (index, (name, value)) in evidence.enumerated() {
            if index > 0 { writer.raw(UInt8(ascii: ",")) }
            writer.string(name)
            writer.raw(UInt8(ascii: ":"))
            if value.isFinite { writer.double(value) } else { writer.raw("null") }
        }
        writer.raw("},\"ts\":")
        writer.string(rfc3339Now())
        writer.raw(UInt8(ascii: "}"))
        return writer.array
    }

    /// The decision a status record carries for `model`, or nil for any other record.
    static func parse(_ record: KafkaMessage, model: String) -> ControlDecision? {
        guard let key = record.key, key.elementsEqual(Self.key(model: model)), let value = record.value, value.count <= 65_536,
              let object = (try? JSONSerialization.jsonObject(with: Data(value))) as? [String: Any],
              object["type"] as? String == "decision", object["model"] as? String == model,
              let action = (object["action"] as? String).flatMap(ControlAction.init(rawValue:)), action == .rollback || action == .promote,
              let trial = object["trial"] as? [String: Any], let version = trial["version"] as? String,
              let location = trial["bundle"] as? String, let sha256 = trial["sha256"] as? String,
              let trialSince = (object["trial_since"] as? NSNumber)?.int64Value else { return nil }
        let evidence = ((object["evidence"] as? [String: Any]) ?? [:]).compactMap { name, value in
            (value as? NSNumber).map { (name, $0.doubleValue) }
        }.sorted { $0.0 < $1.0 }
        let source = (object["source"] as? String).flatMap(Source.init(rawValue:)) ?? .health
        return ControlDecision(model: model, action: action, source: source, trial: BundleRef(version: version, location: location, sha256: sha256),
                               trialSince: trialSince, worker: object["worker"] as? String ?? "", reason: object["reason"] as? String ?? "",
                               evidence: evidence)
    }
}
