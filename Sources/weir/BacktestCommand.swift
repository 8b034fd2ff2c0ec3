import ArgumentParser
import Foundation
import WeirBatch
import WeirControl

/// `weir backtest`: the current and a candidate bundle over the same records, with a report and gates.
struct BacktestCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "backtest",
        abstract: "Score files or a retained Kafka range with the current and a candidate bundle, and report how they differ.",
        discussion: """
        Reports label agreement and confusion, score distribution differences (KS, PSI), per-segment \
        differences (--segment), latency per event, and with outcomes (--label-field in the records, or \
        --labels joined by id) each model's accuracy, log loss, AUC and calibration (MAE and RMSE for \
        regressors). Prints a table; --report writes the JSON report (both bundles' sha256, the gates), \
        --html a page with plots. Exit status: 0 when every --gate holds, 1 when one fails, 2 on an error.
        """)

    @Option(help: "The current bundle (what serves now).")
    var model: String

    @Option(help: "The candidate bundle.")
    var candidate: String

    @OptionGroup var input: BatchInputOptions

    @Option(name: .customLong("label-field"), help: "The field (JSONL) or column (CSV) holding each record's outcome.")
    var labelField: String?

    @Option(help: "Outcomes apart from the records, joined by id: a JSONL or CSV file, or a topic on --brokers.")
    var labels: String?

    @Option(help: "A feature of either model to compare per segment (its categories, or numeric buckets).")
    var segment: String?

    @Option(name: .customLong("segment-buckets"), help: "Quantile buckets for a numeric --segment.")
    var segmentBuckets = 5

    @Option(name: .customLong("agreement-tolerance"), help: "Regressors: answers within this absolute difference agree.")
    var agreementTolerance = 1e-3

    @Option(help: "Conditions for the exit status, e.g. 'agreement>=0.98,auc_delta>=-0.005'.")
    var gate: String?

    @Option(help: "Write the JSON report here.")
    var report: String?

    @Option(help: "Write an HTML page with plots here.")
    var html: String?

    func run() throws {
        let current = try input.loadBundle(model, option: "--model")
        let candidateBundle = try input.loadBundle(candidate, option: "--candidate")
        var run = BacktestRun(current: current, candidate: candidateBundle, input: try input.input())
        run.currentPath = model
        run.candidatePath = candidate
        run.options = try input.batchOptions()
        run.registry = input.registry
        run.showsProgress = input.showsProgress
        run.labelField = labelField
        run.segmentFeature = segment
        guard segmentBuckets >= 2 else { throw CommandFailure("--segment-buckets: give at least 2") }
        run.segmentBuckets = segmentBuckets
        guard agreementTolerance >= 0 else { throw CommandFailure("--agreement-tolerance: give 0 or more") }
        run.agreementTolerance = agreementTolerance
        if let labels {
            if FileManager.default.fileExists(atPath: labels) || labels == "-" || input.brokers == nil {
                run.labels = .files([labels], format: nil)
            } else {
                var range = KafkaRange(brokers: input.brokers!, topic: labels)
                range.properties = try input.kafkaProperties
                run.labels = .kafka(range)
            }
        }
        do {
            if let gate { run.gates = try Gate.parse(gate) }
            let result = try run.run()
            print(result.text)
            if let report { try result.json().write(to: URL(fileURLWithPath: report)) }
            if let html { try Data(result.html.utf8).write(to: URL(fileURLWithPath: html)) }
            if !result.passed { throw ExitCode(1) }
        } catch let exit as ExitCode {
            throw exit
        } catch {
            FileHandle.standardError.write(Data("Error: \(error)\n".utf8))
            throw ExitCode(2)
        }
    }
}
