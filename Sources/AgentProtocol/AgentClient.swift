import SwiftProtobuf
import TTRPC

typealias SwiftProtobufMessage = SwiftProtobuf.Message

/// The host's typed view of the agent API over one ttrpc connection. Every method may throw
/// `TTRPCStatus` (the agent's answer, or DEADLINE_EXCEEDED after `timeout`),
/// `TTRPCConnectionError` (the connection to the guest failed) or `AgentAnswerError` (the
/// answer holds values protos/agent.proto rules out; see AgentAnswers.swift).
public struct AgentClient: Sendable {
    public let connection: TTRPCClient

    public init(connection: TTRPCClient) {
        self.connection = connection
    }

    public func createContainer(
        _ request: AgentCreateContainerRequest, timeout: Duration? = nil
    ) async throws -> AgentCreateContainerResponse {
        try await call(.createContainer, request, timeout)
    }

    public func startProcess(_ request: AgentStartProcessRequest, timeout: Duration? = nil) async throws -> AgentStartProcessResponse {
        try await call(.startProcess, request, timeout)
    }

    public func execProcess(_ request: AgentExecProcessRequest, timeout: Duration? = nil) async throws -> AgentStartProcessResponse {
        try await call(.execProcess, request, timeout)
    }

    public func writeStdin(_ request: AgentWriteStdinRequest, timeout: Duration? = nil) async throws -> AgentWriteStdinResponse {
        let answer: AgentWriteStdinResponse = try await call(.writeStdin, request, timeout)
        try answer.validate(sent: request.data.count)
        return answer
    }

    public func closeStdin(_ request: AgentCloseStdinRequest, timeout: Duration? = nil) async throws -> AgentCloseStdinResponse {
        try await call(.closeStdin, request, timeout)
    }

    /// `writeStdin` for a plain OS thread (one pumping the host's stdin): blocks it until the
    /// agent has taken the bytes. Never call it from the Swift concurrency pool.
    public func writeStdinBlocking(_ request: AgentWriteStdinRequest, timeout: Duration? = nil) throws -> AgentWriteStdinResponse {
        let answer: AgentWriteStdinResponse = try callBlocking(.writeStdin, request, timeout)
        try answer.validate(sent: request.data.count)
        return answer
    }

    /// `closeStdin` for a plain OS thread; see `writeStdinBlocking`.
    public func closeStdinBlocking(_ request: AgentCloseStdinRequest, timeout: Duration? = nil) throws -> AgentCloseStdinResponse {
        try callBlocking(.closeStdin, request, timeout)
    }

    /// Long-polls: returns when output is available or the stream has ended.
    public func readStdout(_ request: AgentReadOutputRequest, timeout: Duration? = nil) async throws -> AgentReadOutputResponse {
        let answer: AgentReadOutputResponse = try await call(.readStdout, request, timeout)
        try answer.validate(.readStdout)
        return answer
    }

    /// Long-polls: returns when output is available or the stream has ended.
    public func readStderr(_ request: AgentReadOutputRequest, timeout: Duration? = nil) async throws -> AgentReadOutputResponse {
        let answer: AgentReadOutputResponse = try await call(.readStderr, request, timeout)
        try answer.validate(.readStderr)
        return answer
    }

    /// `readStdout` for a plain OS thread (one copying output into a FIFO); see `writeStdinBlocking`.
    public func readStdoutBlocking(_ request: AgentReadOutputRequest, timeout: Duration? = nil) throws -> AgentReadOutputResponse {
        let answer: AgentReadOutputResponse = try callBlocking(.readStdout, request, timeout)
        try answer.validate(.readStdout)
        return answer
    }

    /// `readStderr` for a plain OS thread; see `readStdoutBlocking`.
    public func readStderrBlocking(_ request: AgentReadOutputRequest, timeout: Duration? = nil) throws -> AgentReadOutputResponse {
        let answer: AgentReadOutputResponse = try callBlocking(.readStderr, request, timeout)
        try answer.validate(.readStderr)
        return answer
    }

    /// Blocks until the process exits; normally called without a timeout.
    public func waitProcess(_ request: AgentWaitProcessRequest, timeout: Duration? = nil) async throws -> AgentWaitProcessResponse {
        let answer: AgentWaitProcessResponse = try await call(.waitProcess, request, timeout)
        try answer.validate()
        return answer
    }

    public func signalProcess(_ request: AgentSignalProcessRequest, timeout: Duration? = nil) async throws -> AgentSignalProcessResponse {
        try await call(.signalProcess, request, timeout)
    }

    public func resizeTerminal(_ request: AgentResizeTerminalRequest, timeout: Duration? = nil) async throws -> AgentResizeTerminalResponse
    {
        try await call(.resizeTerminal, request, timeout)
    }

    public func stats(_ request: AgentStatsRequest, timeout: Duration? = nil) async throws -> AgentStatsResponse {
        try await call(.stats, request, timeout)
    }

    public func removeContainer(
        _ request: AgentRemoveContainerRequest, timeout: Duration? = nil
    ) async throws -> AgentRemoveContainerResponse {
        try await call(.removeContainer, request, timeout)
    }

    public func updateContainer(
        _ request: AgentUpdateContainerRequest, timeout: Duration? = nil
    ) async throws -> AgentUpdateContainerResponse {
        try await call(.updateContainer, request, timeout)
    }

    public func dropCaches(
        _ request: AgentDropCachesRequest = AgentDropCachesRequest(), timeout: Duration? = nil
    ) async throws -> AgentDropCachesResponse {
        try await call(.dropCaches, request, timeout)
    }

    public func shutdown(
        _ request: AgentShutdownRequest = AgentShutdownRequest(), timeout: Duration? = nil
    ) async throws -> AgentShutdownResponse {
        try await call(.shutdown, request, timeout)
    }

    private func call<Response: SwiftProtobufMessage>(
        _ method: AgentMethod, _ request: some SwiftProtobufMessage, _ timeout: Duration?
    ) async throws -> Response {
        try await connection.call(
            service: AgentMethod.service, method: method.rawValue, request: request, timeout: timeout)
    }

    private func callBlocking<Response: SwiftProtobufMessage>(
        _ method: AgentMethod, _ request: some SwiftProtobufMessage, _ timeout: Duration?
    ) throws -> Response {
        let answer = try connection.callBlocking(
            service: AgentMethod.service, method: method.rawValue, payload: try request.serializedBytes(), timeout: timeout)
        return try Response(serializedBytes: answer)
    }
}
