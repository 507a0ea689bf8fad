/// The agent runs in the guest, so its answers are hostile input: `AgentClient` checks each one
/// against what protos/agent.proto allows before the host uses a value from it.
public struct AgentAnswerError: Error, Equatable, Sendable, CustomStringConvertible {
    public let method: AgentMethod
    public let reason: String

    public init(_ method: AgentMethod, _ reason: String) {
        self.method = method
        self.reason = reason
    }

    public var description: String { "the guest agent gave an impossible \(method.rawValue) answer (\(reason))" }
}

extension AgentWaitProcessResponse {
    /// Exit codes are 8 bits, and a terminating signal is the 7-bit field of a wait status, so
    /// 128 + signal is an 8-bit status too; a killed process has exit code 0.
    public func validate() throws(AgentAnswerError) {
        if signal == 0 {
            guard (0...255).contains(exitCode) else { throw AgentAnswerError(.waitProcess, "exit code \(exitCode)") }
        } else {
            guard (1...127).contains(signal), exitCode == 0 else {
                throw AgentAnswerError(.waitProcess, "signal \(signal) with exit code \(exitCode)")
            }
        }
    }
}

extension AgentReadOutputResponse {
    /// The most the agent sends in one chunk (the cap on `max_bytes`).
    public static let maxChunk = 1 << 20

    /// A chunk is never empty unless the stream ended: an agent that answered empty chunks
    /// forever would keep the host polling at full speed.
    public func validate(_ method: AgentMethod) throws(AgentAnswerError) {
        guard data.count <= Self.maxChunk else { throw AgentAnswerError(method, "\(data.count) bytes in one chunk") }
        guard !data.isEmpty || eof else { throw AgentAnswerError(method, "an empty chunk before the end of the stream") }
    }
}

extension AgentWriteStdinResponse {
    /// The agent cannot have taken more bytes than it was sent.
    public func validate(sent: Int) throws(AgentAnswerError) {
        guard Int(written) <= sent else { throw AgentAnswerError(.writeStdin, "\(written) bytes written of \(sent) sent") }
    }
}
