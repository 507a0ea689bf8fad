import TTRPC

/// What rund-agent implements: one method per RPC of protos/agent.proto (see there for the
/// meaning of every field). Throw `TTRPCStatus` to fail a call with a specific code.
public protocol AgentService: Sendable {
    func createContainer(_ request: AgentCreateContainerRequest, context: TTRPCCallContext) async throws -> AgentCreateContainerResponse
    func startProcess(_ request: AgentStartProcessRequest, context: TTRPCCallContext) async throws -> AgentStartProcessResponse
    func execProcess(_ request: AgentExecProcessRequest, context: TTRPCCallContext) async throws -> AgentStartProcessResponse
    func writeStdin(_ request: AgentWriteStdinRequest, context: TTRPCCallContext) async throws -> AgentWriteStdinResponse
    func closeStdin(_ request: AgentCloseStdinRequest, context: TTRPCCallContext) async throws -> AgentCloseStdinResponse
    func readStdout(_ request: AgentReadOutputRequest, context: TTRPCCallContext) async throws -> AgentReadOutputResponse
    func readStderr(_ request: AgentReadOutputRequest, context: TTRPCCallContext) async throws -> AgentReadOutputResponse
    func waitProcess(_ request: AgentWaitProcessRequest, context: TTRPCCallContext) async throws -> AgentWaitProcessResponse
    func signalProcess(_ request: AgentSignalProcessRequest, context: TTRPCCallContext) async throws -> AgentSignalProcessResponse
    func resizeTerminal(_ request: AgentResizeTerminalRequest, context: TTRPCCallContext) async throws -> AgentResizeTerminalResponse
    func stats(_ request: AgentStatsRequest, context: TTRPCCallContext) async throws -> AgentStatsResponse
    func removeContainer(_ request: AgentRemoveContainerRequest, context: TTRPCCallContext) async throws -> AgentRemoveContainerResponse
    func updateContainer(_ request: AgentUpdateContainerRequest, context: TTRPCCallContext) async throws -> AgentUpdateContainerResponse
    func dropCaches(_ request: AgentDropCachesRequest, context: TTRPCCallContext) async throws -> AgentDropCachesResponse
    func shutdown(_ request: AgentShutdownRequest, context: TTRPCCallContext) async throws -> AgentShutdownResponse
}

extension TTRPCServer {
    /// Serves every method of the agent API from `service`.
    public func register(agent service: some AgentService) {
        func add<Request: SwiftProtobufMessage, Response: SwiftProtobufMessage>(
            _ method: AgentMethod,
            _ body: @escaping @Sendable (Request, TTRPCCallContext) async throws -> Response
        ) {
            register(service: AgentMethod.service, method: method.rawValue, body)
        }
        add(.createContainer, service.createContainer)
        add(.startProcess, service.startProcess)
        add(.execProcess, service.execProcess)
        add(.writeStdin, service.writeStdin)
        add(.closeStdin, service.closeStdin)
        add(.readStdout, service.readStdout)
        add(.readStderr, service.readStderr)
        add(.waitProcess, service.waitProcess)
        add(.signalProcess, service.signalProcess)
        add(.resizeTerminal, service.resizeTerminal)
        add(.stats, service.stats)
        add(.removeContainer, service.removeContainer)
        add(.updateContainer, service.updateContainer)
        add(.dropCaches, service.dropCaches)
        add(.shutdown, service.shutdown)
    }
}
