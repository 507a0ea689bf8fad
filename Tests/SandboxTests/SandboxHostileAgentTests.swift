import AgentProtocol
@testable import Sandbox
import Testing
import TTRPC

/// A guest agent that answers with values protos/agent.proto rules out: `rund run` must end with
/// one line naming the bad answer (never trap on it, never spin on it), through the real ttrpc
/// client and the real `Sandbox.waitForProcess`.
@Suite struct SandboxHostileAgentTests {
    /// A ttrpc server posing as the agent: output streams answer `output`, Wait answers `exit`.
    private func hostileAgent(
        output: AgentReadOutputResponse, exit: AgentWaitProcessResponse
    ) throws
        -> (AgentClient, TTRPCServerConnection)
    {
        let server = TTRPCServer()
        for method in [AgentMethod.readStdout, .readStderr] {
            server.register(service: AgentMethod.service, method: method.rawValue) { (_: AgentReadOutputRequest, _) in output }
        }
        server.register(service: AgentMethod.service, method: AgentMethod.waitProcess.rawValue) { (_: AgentWaitProcessRequest, _) in exit }
        let (host, guest) = try SocketStream.pair()
        let connection = try server.serve(guest)
        return (AgentClient(connection: try TTRPCClient(stream: host)), connection)
    }

    /// Was a trap: `128 + signal` overflowed Int32 (fuzz seed Fuzz/Corpus/AgentAnswers/wait-huge-signal).
    @Test func aSignalNumberNoProcessCanHaveIsOneLine() async throws {
        let (client, connection) = try hostileAgent(output: .with { $0.eof = true }, exit: .with { $0.signal = .max })
        defer { connection.close() }
        let error = await #expect(throws: AgentAnswerError.self) {
            try await Sandbox.waitForProcess(client, id: "c") { _, _ in }
        }
        #expect(error?.description == "the guest agent gave an impossible WaitProcess answer (signal 2147483647 with exit code 0)")
    }

    @Test func anExitCodeWiderThanEightBitsIsRefused() async throws {
        let (client, connection) = try hostileAgent(output: .with { $0.eof = true }, exit: .with { $0.exitCode = -1 })
        defer { connection.close() }
        await #expect(throws: AgentAnswerError(.waitProcess, "exit code -1")) {
            try await Sandbox.waitForProcess(client, id: "c") { _, _ in }
        }
    }

    /// An agent answering empty chunks forever would keep rund polling at full speed.
    @Test func emptyOutputChunksBeforeTheEndAreRefused() async throws {
        let (client, connection) = try hostileAgent(output: .with { $0.eof = false }, exit: .with { $0.exitCode = 0 })
        defer { connection.close() }
        await #expect(throws: AgentAnswerError.self) {
            try await Sandbox.waitForProcess(client, id: "c") { _, _ in }
        }
    }

    /// `SandboxExit` stays total even for answers the client would refuse.
    @Test func everyWaitAnswerGivesAStatusWithoutTrapping() {
        #expect(SandboxExit(AgentWaitProcessResponse.with { $0.signal = .max }).processStatus == .max)
        #expect(SandboxExit(AgentWaitProcessResponse.with { $0.signal = .min }).processStatus == Int32.min + 128)
        #expect(SandboxExit(AgentWaitProcessResponse.with { $0.signal = 127 }).status == 255)
    }
}
