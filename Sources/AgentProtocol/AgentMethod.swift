/// The agent service's ttrpc name and its methods, as spelled in protos/agent.proto.
public enum AgentMethod: String, CaseIterable, Sendable {
    public static let service = "rund.agent.v1.Agent"

    case createContainer = "CreateContainer"
    case startProcess = "StartProcess"
    case execProcess = "ExecProcess"
    case writeStdin = "WriteStdin"
    case closeStdin = "CloseStdin"
    case readStdout = "ReadStdout"
    case readStderr = "ReadStderr"
    case waitProcess = "WaitProcess"
    case signalProcess = "SignalProcess"
    case resizeTerminal = "ResizeTerminal"
    case stats = "Stats"
    case removeContainer = "RemoveContainer"
    case updateContainer = "UpdateContainer"
    case dropCaches = "DropCaches"
    case shutdown = "Shutdown"
}
