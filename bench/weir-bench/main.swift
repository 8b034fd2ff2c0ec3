import Foundation
import WeirKafka

/// weir-bench: Weir's benchmarks, each measured as a ratio against a peer in the same run.
///   weir-bench kafka [--events N] [--partitions P] [--bytes B] [--rounds R]
///   weir-bench codec [--events N]           (event decoder vs jansson)
///   weir-bench avro-codec [--events N]      (Avro decoder vs libavro-c, and vs the JSON decoder on the same rows)
///   weir-bench avro-worker [--events N] [--rounds R]   (worker on Avro vs on JSON vs the C floor)
///   weir-bench model MODELS_DIR PEER_JSONL   (inference core vs onnxruntime)
///   weir-bench worker [--events N] [--rounds R] [--model DIR] [--drift-rounds N] [--contenders c-event,weir,weir-drift,python]
///                                                                (C floor vs Weir worker vs Python worker)
///   weir-bench swap [--rate R] [--swaps K] [--max-delay-ms D] [--fetch-wait-ms F] [--linger-ms L] [--model DIR]   (longest output gap during control-topic swaps)
///   weir-bench latency [--rate R] [--seconds S] [--partitions P] [--model DIR] [--kafka name=value ...]
///                                                                (event-to-delivery latency at a paced rate)
///   weir-bench score [--events N] [--rounds R] [--model DIR]   (weir score vs the Python peer, 1 and 2 threads)
///   weir-bench backtest [--events N] [--partitions P]          (weir backtest over a retained range)
///   weir-bench outcomes [--pending N]                          (the outcome join's memory per pending prediction)
///   weir-bench worker-contender BOOTSTRAP INPUT OUTPUT DLQ GROUP EVENTS MODEL_DIR   (run by `worker`)
///   weir-bench swift-passthrough BOOTSTRAP INPUT OUTPUT GROUP EVENTS   (a contender, run by `kafka`)
let arguments = Array(CommandLine.arguments.dropFirst())

func option(_ name: String, default value: Int) -> Int {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count, let parsed = Int(arguments[index + 1]) else {
        return value
    }
    return parsed
}

func option(_ name: String, default value: String) -> String {
    guard let index = arguments.firstIndex(of: name), index + 1 < arguments.count else { return value }
    return arguments[index + 1]
}

do {
    switch arguments.first {
    case "swift-passthrough":
        guard arguments.count == 6, let events = Int(arguments[5]) else {
            FileHandle.standardError.write(Data("usage: weir-bench swift-passthrough BOOTSTRAP INPUT OUTPUT GROUP EVENTS\n".utf8))
            exit(2)
        }
        exit(try runSwiftPassthrough(bootstrap: arguments[1], input: arguments[2], output: arguments[3],
                                     group: arguments[4], events: events))
    case "worker-contender":
        guard arguments.count == 8 || arguments.count == 9, let events = Int(arguments[6]) else {
            FileHandle.standardError.write(Data("usage: weir-bench worker-contender BOOTSTRAP INPUT OUTPUT DLQ GROUP EVENTS MODEL_DIR [DRIFT_TOPIC]\n".utf8))
            exit(2)
        }
        exit(try runWorkerContender(bootstrap: arguments[1], input: arguments[2], output: arguments[3], dlq: arguments[4],
                                    group: arguments[5], events: events, model: arguments[7],
                                    driftTopic: arguments.count == 9 ? arguments[8] : nil))
    case "worker":
        try runWorkerBenchmark(events: option("--events", default: 120_000), partitions: option("--partitions", default: 32),
                               rounds: option("--rounds", default: 3), model: option("--model", default: "models/demo"),
                               python: option("--python", default: "bench/python/python_worker.py"),
                               pythonModel: option("--python-model", default: "bench/out/demo.int8.onnx"),
                               latencySeconds: option("--latency-seconds", default: 10),
                               driftRounds: option("--drift-rounds", default: 6),
                               only: arguments.firstIndex(of: "--contenders").map { arguments[$0 + 1].split(separator: ",").map(String.init) })
    case "latency":
        let model = option("--model", default: "models/demo")
        let partitions = option("--partitions", default: 32), rate = option("--rate", default: 20_000)
        let cluster = try EmbeddedCluster(topics: [])
        var kafka = [String: String]()
        for (index, argument) in arguments.enumerated() where argument == "--kafka" && index + 1 < arguments.count {
            let pair = arguments[index + 1].split(separator: "=", maxSplits: 1).map(String.init)
            guard pair.count == 2 else {
                FileHandle.standardError.write(Data("weir-bench latency: --kafka wants name=value, got '\(arguments[index + 1])'\n".utf8))
                exit(2)
            }
            kafka[pair[0]] = pair[1]
        }
        let latency = try measureLatency(cluster: cluster, rate: rate, seconds: option("--seconds", default: 10), model: model,
                                         partitions: partitions, kafka: kafka)
        cluster.stop()
        print(String(format: "event-to-delivery latency at %d events/s, %d partitions: p50 %.2f ms, p99 %.2f ms", rate, partitions,
                     latency.p50, latency.p99))
    case "swap":
        let model = option("--model", default: "models/demo")
        try runSwapBenchmark(rate: option("--rate", default: 20_000), swaps: option("--swaps", default: 6), model: model,
                              maxDelayMs: option("--max-delay-ms", default: 5), fetchWaitMs: option("--fetch-wait-ms", default: 5),
                              lingerMs: option("--linger-ms", default: 5))
    case "model":
        guard arguments.count >= 3 else {
            FileHandle.standardError.write(Data("usage: weir-bench model MODELS_DIR PEER_JSONL [--seconds S]\n".utf8))
            exit(2)
        }
        let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[$0 + 1]) } ?? 0.5
        try runModelBenchmark(directory: arguments[1], peerFile: arguments[2], seconds: seconds)
    case "tabular":
        guard arguments.count >= 2 else {
            FileHandle.standardError.write(Data("usage: weir-bench tabular PEER_JSONL [--seconds S]\n".utf8))
            exit(2)
        }
        let seconds = arguments.firstIndex(of: "--seconds").flatMap { Double(arguments[$0 + 1]) } ?? 0.5
        try runTabularBenchmark(peerFile: arguments[1], seconds: seconds)
    case "codec":
        try runCodecBenchmark(events: option("--events", default: 20_000), seconds: Double(option("--seconds", default: 2)),
                              peer: !arguments.contains("--no-peer"))
    case "avro-codec":
        try runAvroCodecBenchmark(events: option("--events", default: 20_000), seconds: Double(option("--seconds", default: 2)))
    case "avro-worker":
        try runAvroWorkerBenchmark(events: option("--events", default: 120_000), partitions: option("--partitions", default: 32),
                                   rounds: option("--rounds", default: 3), model: option("--model", default: "models/demo"))
    case "score":
        try runScoreBenchmark(events: option("--events", default: 300_000), rounds: option("--rounds", default: 3),
                              model: option("--model", default: "models/payments"), peer: option("--python", default: "bench/python/score_peer.py"),
                              weir: option("--weir", default: ".build/release/weir"))
    case "backtest":
        try runBacktestBenchmark(events: option("--events", default: 1_000_000), partitions: option("--partitions", default: 128),
                                 current: option("--model", default: "models/payments"),
                                 candidate: option("--candidate", default: "models/payments-candidate"))
    case "outcomes":
        runOutcomeMemoryBenchmark(pending: option("--pending", default: 1_000_000))
    case "kafka":
        try runKafkaBenchmark(events: option("--events", default: 120_000), partitions: option("--partitions", default: 32),
                              eventBytes: option("--bytes", default: 750), rounds: option("--rounds", default: 3))
    default:
        FileHandle.standardError.write(Data("usage: weir-bench kafka [--events N] [--partitions P] [--bytes B] [--rounds R]\n".utf8))
        exit(2)
    }
} catch {
    FileHandle.standardError.write(Data("weir-bench: \(error)\n".utf8))
    exit(1)
}
