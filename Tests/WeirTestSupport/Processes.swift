import Foundation

/// Path of a product built next to the test binary (`make test` builds `weir` first).
public func builtProduct(_ name: String) -> URL {
    let executable = URL(fileURLWithPath: "/proc/self/exe").resolvingSymlinksInPath()
    var directory = executable.deletingLastPathComponent()
    while directory.pathExtension == "xctest" || directory.lastPathComponent == "Contents" || directory.lastPathComponent == "MacOS" {
        directory = directory.deletingLastPathComponent()
    }
    return directory.appendingPathComponent(name)
}

/// Runs a command with stdin; returns its status, stdout and stderr. Bounded by `timeoutSeconds`.
@discardableResult
public func run(_ arguments: [String], input: String = "", timeoutSeconds: Double = 30) throws
    -> (status: Int32, output: String, errors: String)
{
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
    process.arguments = arguments
    let stdin = Pipe(), stdout = Pipe()
    // stderr goes to a file so a chatty child can never block on a full pipe.
    let errorFile = FileManager.default.temporaryDirectory.appendingPathComponent("weir-test-\(UUID().uuidString).err")
    _ = FileManager.default.createFile(atPath: errorFile.path, contents: nil)
    defer { try? FileManager.default.removeItem(at: errorFile) }
    let errorHandle = try FileHandle(forWritingTo: errorFile)
    defer { try? errorHandle.close() }
    process.standardInput = stdin
    process.standardOutput = stdout
    process.standardError = errorHandle
    try process.run()
    stdin.fileHandleForWriting.write(Data(input.utf8))
    try stdin.fileHandleForWriting.close()
    let killer = DispatchWorkItem { if process.isRunning { process.terminate() } }
    DispatchQueue.global().asyncAfter(deadline: .now() + timeoutSeconds, execute: killer)
    let data = stdout.fileHandleForReading.readDataToEndOfFile()
    process.waitUntilExit()
    let errors = (try? Data(contentsOf: errorFile)) ?? Data()
    killer.cancel()
    return (process.terminationStatus, String(decoding: data, as: UTF8.self), String(decoding: errors, as: UTF8.self))
}

public struct TestFailure: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}
