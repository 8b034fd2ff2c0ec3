import Foundation
import Testing
import WeirBatch
import WeirControl
import WeirDrift
import WeirKafka
import WeirTestSupport
import WeirWorker

/// scripts/make-backtest-goldens.py's figures (onnxruntime, scikit-learn, scipy).
func backtestGoldens() throws -> [String: Any] {
    let url = repositoryRoot.appendingPathComponent("Tests/WeirWorkerTests/Fixtures/backtest-goldens.json")
    return try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
}

@Suite(.timeLimit(.minutes(3))) struct BacktestTests {
    /// The payments model against its candidate on labelled held-out rows: accuracy, AUC, log loss,
    /// calibration error, agreement, confusion and KS as scikit-learn and scipy compute them on
    /// onnxruntime's answers.
    @Test func figuresMatchScikitLearnAndScipy() throws {
        let goldens = try #require(try backtestGoldens()["payments"] as? [String: Any])
        var run = BacktestRun(current: try ModelBundle(directory: paymentsBundleURL), candidate: try ModelBundle(directory: candidateBundleURL),
                              input: .files([holdoutCSV.path], format: nil))
        run.labelField = "label"
        run.segmentFeature = "country"
        run.gates = try Gate.parse("agreement>=0.9, auc_delta>=-0.01")
        let report = try run.run()
        #expect(report.metrics["rows"] == goldens["rows"] as? Double)
        for name in ["agreement", "ks", "current_accuracy", "candidate_accuracy", "current_auc", "candidate_auc",
                     "current_log_loss", "candidate_log_loss", "current_ece", "candidate_ece"] {
            let expected = try #require(goldens[name] as? Double, "\(name)")
            let actual = try #require(report.metrics[name], "\(name)")
            #expect(abs(actual - expected) < 1e-6, "\(name): \(actual) vs \(expected)")
        }
        #expect(report.confusion?.counts == goldens["confusion"] as? [[Int]])
        #expect(report.passed)
        #expect(report.gates.map(\.passed) == [true, true])
        #expect(report.current.sha256 == ModelBundle.identity(of: paymentsBundleURL))
        #expect(report.candidate.sha256 == ModelBundle.identity(of: candidateBundleURL))
        #expect(Set(report.segments.map(\.segment)) == Set(SyntheticEvents.countries))
        #expect(report.segments.reduce(0) { $0 + $1.n } == 2_000)
        let accuracyInterval = try #require(report.intervals["current_accuracy"])
        #expect(accuracyInterval[0] < report.metrics["current_accuracy"]! && report.metrics["current_accuracy"]! < accuracyInterval[1])
        // The JSON report reads back; the page holds both plots.
        let again = try BacktestReport.read(try report.json())
        #expect(again.metrics == report.metrics)
        #expect(again.candidate == report.candidate)
        #expect(report.html.contains("aria-label=\"score histograms\"") && report.html.contains("aria-label=\"candidate reliability\""))
    }

    /// Outcomes given apart from the records (JSONL by id, in another order) give the same figures
    /// as the label column; a bundle against itself agrees everywhere.
    @Test func outcomesJoinedByIDAndSelfComparison() throws {
        let scratch = try ScratchDirectory()
        let lines = try String(contentsOf: holdoutCSV, encoding: .utf8).split(separator: "\n").dropFirst()
        let labels = lines.reversed().map { line -> String in
            let cells = line.split(separator: ",", omittingEmptySubsequences: false)
            return "{\"id\":\"\(cells[0])\",\"label\":\(cells.last!)}"
        }
        try (labels.joined(separator: "\n") + "\n").write(toFile: scratch.path("labels.jsonl"), atomically: true, encoding: .utf8)
        let current = try ModelBundle(directory: paymentsBundleURL), candidate = try ModelBundle(directory: candidateBundleURL)
        var inline = BacktestRun(current: current, candidate: candidate, input: .files([holdoutCSV.path], format: nil))
        inline.labelField = "label"
        var joined = BacktestRun(current: current, candidate: candidate, input: .files([holdoutCSV.path], format: nil))
        joined.labels = .files([scratch.path("labels.jsonl")], format: nil)
        joined.options.threads = 1
        let a = try inline.run(), b = try joined.run()
        for name in ["labelled_rows", "current_accuracy", "candidate_auc", "log_loss_delta"] {
            #expect(a.metrics[name] == b.metrics[name], "\(name)")
        }
        var same = BacktestRun(current: current, candidate: current, input: .files([holdoutCSV.path], format: nil))
        same.gates = try Gate.parse("agreement==1,ks<=0,mean_abs_diff<=0,auc_delta>=0")
        let report = try same.run()
        #expect(report.metrics["agreement"] == 1)
        #expect(report.metrics["psi"].map { abs($0) < 1e-9 } == true)
        // No labels: auc_delta is not measured, so its gate fails and says so.
        #expect(report.gates.map(\.passed) == [true, true, true, false])
        #expect(!report.passed)
        #expect(report.text.contains("gate auc_delta>=0: not measured FAIL"))
    }

    /// Regressors: the same model as two versions agrees everywhere; MAE and RMSE against the
    /// outcomes are the model's own errors, computed here from its answers.
    @Test func regressorsReportErrorsAgainstOutcomes() throws {
        let scratch = try ScratchDirectory()
        let onnx = repositoryRoot.appendingPathComponent("Tests/WeirModelTests/Fixtures/mlp_regressor.onnx")
        let header = (0..<24).map { "x\($0)" }
        var random = SplitMix64(seed: 3)
        var rows = [[Float]]()
        var text = (["id"] + header + ["target"]).joined(separator: ",") + "\n"
        var train = (header + ["target"]).joined(separator: ",") + "\n"
        for row in 0..<500 {
            let values = (0..<24).map { _ in Float(random.nextGaussian()) }
            rows.append(values)
            text += "r\(row)," + values.map { String($0) }.joined(separator: ",") + ",\(values[0] * 2 + 1)\n"
            train += values.map { String($0) }.joined(separator: ",") + ",\(values[0] * 2 + 1)\n"
        }
        try text.write(toFile: scratch.path("rows.csv"), atomically: true, encoding: .utf8)
        try train.write(toFile: scratch.path("train.csv"), atomically: true, encoding: .utf8)
        for version in ["1.0.0", "1.1.0"] {
            _ = try BundlePackager.package(onnx: onnx, train: URL(fileURLWithPath: scratch.path("train.csv")), name: "price",
                                           version: version, out: scratch.url.appendingPathComponent(version), labelColumn: "target")
        }
        let current = try ModelBundle(directory: scratch.url.appendingPathComponent("1.0.0"))
        var run = BacktestRun(current: current, candidate: try ModelBundle(directory: scratch.url.appendingPathComponent("1.1.0")),
                              input: .files([scratch.path("rows.csv")], format: nil))
        run.labelField = "target"
        run.segmentFeature = "x0"
        run.gates = try Gate.parse("agreement>=1,mae_delta<=0")
        let report = try run.run()
        #expect(report.passed)
        #expect(report.task == "regression")
        var absolute = 0.0, squared = 0.0
        let answers = try #require(try current.model.run(rows.flatMap { $0 })["variable"]?.floats)
        for (index, values) in rows.enumerated() {
            let error = Double(answers[index]) - Double(values[0] * 2 + 1)
            absolute += abs(error)
            squared += error * error
        }
        #expect(abs(try #require(report.metrics["current_mae"]) - absolute / 500) < 1e-4)
        #expect(abs(try #require(report.metrics["current_rmse"]) - (squared / 500).squareRoot()) < 1e-4)
        #expect(report.segments.count == 5 && report.segments.allSatisfy { $0.n == 100 })
    }

    @Test func gatesNameTheirProblem() {
        #expect(throws: BatchError.self) { try Gate.parse("agreement") }
        do { _ = try Gate.parse("agreemnt>=0.9") } catch {
            #expect(error.description.contains("no metric 'agreemnt'; use one of"))
        }
        do { _ = try Gate.parse("auc_delta>=-x") } catch {
            #expect(error.description.contains("'-x' is not a number"))
        }
        #expect((try? Gate.parse("auc_delta>=-0.005,psi<0.2"))?.map(\.comparison) == [">=", "<"])
    }

    /// The command's exit status follows the gates, and `weir control deploy --require-backtest`
    /// refuses a candidate without a passing report for it before it sends anything.
    @Test func exitStatusAndRequireBacktest() throws {
        let scratch = try ScratchDirectory()
        let weir = builtProduct("weir").path
        let base = [weir, "backtest", "--model", paymentsBundleURL.path, "--candidate", candidateBundleURL.path, "--input", holdoutCSV.path,
                    "--label-field", "label", "--no-progress"]
        let passing = try WeirTestSupport.run(base + ["--gate", "agreement>=0.9", "--report", scratch.path("pass.json"), "--html", scratch.path("pass.html")])
        #expect(passing.status == 0, "\(passing.errors)")
        #expect(passing.output.contains("every gate passed"))
        let failing = try WeirTestSupport.run(base + ["--gate", "agreement>=0.999", "--report", scratch.path("fail.json")])
        #expect(failing.status == 1)
        let broken = try WeirTestSupport.run(base + ["--gate", "nonsense>=1"])
        #expect(broken.status == 2)
        #expect(broken.errors.contains("--gate 'nonsense>=1': no metric 'nonsense'"))

        let key = scratch.path("key")
        try "backtest-walkthrough-secret-of-32-bytes\n".write(toFile: key, atomically: true, encoding: .utf8)
        let cluster = try EmbeddedCluster(brokers: 1, topics: [("control", 1)])
        defer { cluster.stopCheckingClients() }
        let deploy = [weir, "control", "deploy", "--brokers", cluster.bootstrapServers, "--topic", "control", "--key-file", key,
                      "--bundle", candidateBundleURL.path, "--strategy", "canary", "--percent", "10", "--require-backtest"]
        let refused = try WeirTestSupport.run(deploy + [scratch.path("fail.json")])
        #expect(refused.status != 0)
        #expect(refused.errors.contains("gate agreement>=0.999 failed"))
        // A report for another candidate (the bundle against itself) does not vouch for this one.
        _ = try WeirTestSupport.run([weir, "backtest", "--model", paymentsBundleURL.path, "--candidate", paymentsBundleURL.path,
                                     "--input", holdoutCSV.path, "--gate", "agreement>=1", "--report", scratch.path("other.json")])
        let other = try WeirTestSupport.run(deploy + [scratch.path("other.json")])
        #expect(other.errors.contains("the report's candidate is 1.0.0"))
        let sent = try WeirTestSupport.run(deploy + [scratch.path("pass.json")])
        #expect(sent.status == 0, "\(sent.errors)")
        #expect(sent.output.contains("sent deploy payments 1.1.0 (canary 10.0%)"))
    }
}

@Suite struct OutcomeStatisticsTests {
    @Test func aucAndLogLossMatchScikitLearn() throws {
        let goldens = try #require(try backtestGoldens()["statistics"] as? [String: Any])
        let scores = try #require(goldens["scores"] as? [Double]).map(Float.init)
        let truth = try #require(goldens["truth"] as? [Int]).map { $0 == 1 }
        let auc = try #require(OutcomeStatistics.auc(scores: scores, positive: truth))
        #expect(abs(auc - (goldens["auc"] as! Double)) < 1e-12)
        let observed = zip(scores, truth).map { $1 ? $0 : 1 - $0 }
        #expect(abs(OutcomeStatistics.logLoss(probabilityOfObserved: observed) - (goldens["log_loss"] as! Double)) < 1e-6)
        #expect(OutcomeStatistics.auc(scores: [0.1, 0.2], positive: [true, true]) == nil)
        // Three classes: the mean one-vs-rest AUC, as scikit-learn's multi_class="ovr", average="macro".
        let multiclass = try #require(goldens["multiclass"] as? [String: Any])
        let rows = try #require(multiclass["scores"] as? [[Double]]).flatMap { $0.map(Float.init) }
        let classes = try #require(multiclass["truth"] as? [Int])
        let macro = try #require(OutcomeStatistics.auc(rows: rows, width: 3, truth: classes))
        #expect(abs(macro.value - (multiclass["auc"] as! Double)) < 1e-9)
        // Wilson's interval for 0 of 10 and 10 of 10 stays inside [0, 1] and is not empty.
        let none = OutcomeStatistics.wilson(successes: 0, n: 10), all = OutcomeStatistics.wilson(successes: 10, n: 10)
        #expect(none.low == 0 && none.high > 0.2 && all.high == 1 && all.low < 0.8)
    }
}
