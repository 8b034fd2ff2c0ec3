import ArgumentParser

@main
struct Weir: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "weir",
        abstract: "A streaming inference worker: Kafka events in, int8 predictions out.",
        subcommands: [ServeCommand.self, DemoCommand.self, BrokerCommand.self, ModelCommand.self, ControlCommand.self, ProduceCommand.self,
                      ScoreCommand.self, BacktestCommand.self])
}
