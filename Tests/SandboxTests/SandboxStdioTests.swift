#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import AgentProtocol
import HostOS
@testable import Sandbox
import Storage
import Synchronization
import Testing
import TTRPC

/// `-i` and `-t` plumbing against the real agent service on this host (over ttrpc on a
/// socketpair, running the host's sh and cat): what rund run does, minus the VM.
@Suite struct SandboxStdioTests {
    private func connectedAgent() throws -> (AgentClient, TTRPCServerConnection) {
        let server = TTRPCServer()
        server.register(agent: GuestAgent(table: ProcessTable(reaping: .perProcess)) {})
        let (host, guest) = try SocketStream.pair()
        let connection = try server.serve(guest)
        return (AgentClient(connection: try TTRPCClient(stream: host)), connection)
    }

    private func start(_ client: AgentClient, _ id: String, _ spec: SandboxSpec) async throws {
        let config = OCIConfig.shellOnPath
        _ = try await client.startProcess(
            .with {
                $0.containerID = id
                $0.process = try spec.processSpec(config: config)
            })
    }

    private func output(_ client: AgentClient, _ id: String) async throws -> (String, SandboxExit) {
        let collected = Collected()
        let exit = try await Sandbox.waitForProcess(client, id: id) { _, bytes in collected.append(bytes) }
        return (collected.text, exit)
    }

    @Test func interactiveStdinReachesTheProcessAndEndsWithEOF() async throws {
        let (client, connection) = try connectedAgent()
        defer { connection.close() }
        let spec = SandboxSpec(id: "in", root: .image("unused"), command: ["cat"], interactive: true)
        try await start(client, "in", spec)
        let input = try Pipe.make()
        let pump = try SandboxStdin(input: input.read.rawValue, client: client, process: .with { $0.containerID = "in" })
        try input.write.writeAll("a\nb\n")
        input.write.close()
        let (text, exit) = try await output(client, "in")
        pump.stop()
        pump.join()
        #expect(text == "a\nb\n")
        #expect(exit == SandboxExit(processStatus: 0, oomKilled: false))
    }

    @Test func withoutInteractiveStdinIsEmpty() async throws {
        let (client, connection) = try connectedAgent()
        defer { connection.close() }
        try await start(client, "null", SandboxSpec(id: "null", root: .image("unused"), command: ["sh", "-c", "cat; echo done"]))
        let (text, _) = try await output(client, "null")
        #expect(text == "done\n")
    }

    /// A stopped pump ends although its input never does (a terminal nobody types into).
    @Test(.timeLimit(.minutes(2))) func aStoppedPumpEndsWithoutEndOfInput() async throws {
        let (client, connection) = try connectedAgent()
        defer { connection.close() }
        try await start(client, "idle", SandboxSpec(id: "idle", root: .image("unused"), command: ["sleep", "0.1"], interactive: true))
        let input = try Pipe.make()
        let pump = try SandboxStdin(input: input.read.rawValue, client: client, process: .with { $0.containerID = "idle" })
        let (_, exit) = try await output(client, "idle")
        #expect(exit.status == 0)
        pump.stop()
        pump.join()  // The time limit catches a pump that never ends.
        input.write.close()
    }

    /// The resize travels through a Task; on a loaded two-core host it can wait long behind other
    /// tests, so the process waits for the change with no bound of its own (the time limit catches a
    /// resize that never arrives).
    @Test(.timeLimit(.minutes(3))) func aTerminalHasTheSizeAndFollowsResizes() async throws {
        let (client, connection) = try connectedAgent()
        defer { connection.close() }
        let size = WindowSize(rows: 30, columns: 100)
        try await start(client, "tty", SandboxSpec(id: "tty", root: .image("unused"), command: ["stty", "size"], terminal: size))
        let (first, _) = try await output(client, "tty")
        #expect(first == "30 100\r\n")

        let poll = "while [ \"$(stty size)\" = \"30 100\" ]; do sleep 0.1; done; stty size"
        let spec = SandboxSpec(id: "resized", root: .image("unused"), command: ["sh", "-c", poll], terminal: size)
        try await start(client, "resized", spec)
        let control = SandboxControl()
        control.resize(to: WindowSize(rows: 40, columns: 120))  // before `started`: delivered once it is
        control.started(client: client, containerID: "resized", hasTerminal: true)
        let (text, exit) = try await output(client, "resized")
        #expect(text == "40 120\r\n")
        #expect(exit.status == 0)
    }
}

/// The host's PATH, so the agent finds sh, cat and sleep here.
private enum OCIConfig {
    static let shellOnPath = Storage.OCI.ImageConfiguration.Config(environment: ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"])
}

private final class Collected: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ more: [UInt8]) { bytes.withLock { $0 += more } }
    var text: String { bytes.withLock { String(decoding: $0, as: UTF8.self) } }
}
