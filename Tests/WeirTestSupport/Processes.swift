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

/// Waits at most `seconds` for `process` to end, so a test never hangs on a child that ignores its
/// signal. Past the bound the child is killed (SIGKILL cannot be refused) and `false` says it did not
/// end by itself.
@discardableResult
public func waitForExit(_ process: Process, seconds: Double = 30) -> Bool {
    let exited = DispatchSemaphore(value: 0)
    DispatchQueue.global().async { process.waitUntilExit(); exited.signal() }
    if exited.wait(timeout: .now() + seconds) == .success { return true }
    kill(process.processIdentifier, SIGKILL)
    _ = exited.wait(timeout: .now() + 10)
    return false
}

/// Sends `signal` and waits (bounded) for the child to end; `false` when it had to be killed.
@discardableResult
public func stop(_ process: Process, signal: Int32 = SIGTERM, seconds: Double = 30) -> Bool {
    guard process.isRunning else { return true }
    kill(process.processIdentifier, signal)
    return waitForExit(process, seconds: seconds)
}

/// Reads the child's first line of `pipe` (bounded): a child that never writes it is killed, which
/// closes the pipe and ends the read.
public func readFirstLine(_ pipe: Pipe, of process: Process, seconds: Double = 30) -> String {
    let killer = DispatchWorkItem { if process.isRunning { kill(process.processIdentifier, SIGKILL) } }
    DispatchQueue.global().asyncAfter(deadline: .now() + seconds, execute: killer)
    defer { killer.cancel() }
    var line = Data()
    while true {
        let byte = pipe.fileHandleForReading.readData(ofLength: 1)
        if byte.isEmpty || byte == Data([10]) { break }
        line.append(byte)
    }
    return String(decoding: line, as: UTF8.self)
}
