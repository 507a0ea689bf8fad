#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Logging
import Synchronization

/// A ttrpc server: services registered by name, served on any number of connections.
///
/// Each connection gets a reader and a writer OS thread; each request runs as its own Swift
/// task, so a blocking call (Wait) never holds up the others, and responses go out whole, in
/// completion order, on the request's stream id. Protocol errors are answered the way
/// containerd's ttrpc 1.1.1 server answers them (docs/ttrpc.md); no input crashes the server.
public final class TTRPCServer: Sendable {
    /// Handles one call: the request payload in, the response payload out, or a thrown
    /// `TTRPCStatus` (any other error is reported as UNKNOWN with its description).
    public typealias Handler = @Sendable (_ context: TTRPCCallContext, _ payload: [UInt8]) async throws -> [UInt8]

    private struct State {
        var handlers: [String: [String: Handler]] = [:]
        var connections: [ObjectIdentifier: TTRPCServerConnection] = [:]
        var listeners: [FileDescriptor] = []
        var stopped = false
    }

    private let state = Mutex(State())
    let logger: Logger

    public init(logger: Logger = Logger(label: "rund.ttrpc.server")) {
        self.logger = logger
    }

    /// Registers `handler` for `/service/method`, replacing any earlier one.
    public func register(service: String, method: String, handler: @escaping Handler) {
        state.withLock { $0.handlers[service, default: [:]][method] = handler }
    }

    /// Serves ttrpc on `stream` until either side closes it. Returns at once.
    @discardableResult
    public func serve(_ stream: any ByteStream) throws -> TTRPCServerConnection {
        let connection = TTRPCServerConnection(server: self, stream: stream)
        let accepted = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.connections[ObjectIdentifier(connection)] = connection
            return true
        }
        guard accepted else {
            connection.close()
            return connection
        }
        try connection.start()
        return connection
    }

    /// Accepts connections on a listening Unix socket on a dedicated thread, serving each one,
    /// until `shutdown()`.
    public func serve(listener: FileDescriptor) throws {
        let registered = state.withLock { state -> Bool in
            guard !state.stopped else { return false }
            state.listeners.append(listener)
            return true
        }
        guard registered else { return }
        _ = try OSThread.spawn(name: "ttrpc-accept") { [self] in
            while true {
                do {
                    let peer = try listener.accept()
                    try serve(SocketStream(peer))
                } catch let error as SystemError where error.errno == ECONNABORTED {
                    continue
                } catch {
                    if !isStopped { logger.error("ttrpc accept loop ended: \(error)") }
                    return
                }
            }
        }
    }

    /// Stops accepting and closes every connection; handlers still running are cancelled.
    public func shutdown() {
        let (listeners, connections) = state.withLock { state in
            state.stopped = true
            defer {
                state.listeners = []
                state.connections = [:]
            }
            return (state.listeners, Array(state.connections.values))
        }
        for listener in listeners { listener.shutdownBoth() }
        for connection in connections { connection.close() }
    }

    /// Open connections (for tests and diagnostics).
    public var connectionCount: Int { state.withLock { $0.connections.count } }

    private var isStopped: Bool { state.withLock { $0.stopped } }

    /// The handler for a call, or the status ttrpc answers when there is none.
    func handler(service: String, method: String) -> Result<Handler, TTRPCStatus> {
        state.withLock { state in
            guard let methods = state.handlers[service] else {
                return .failure(TTRPCStatus(.unimplemented, "service \(service)"))
            }
            guard let handler = methods[method] else {
                return .failure(TTRPCStatus(.unimplemented, "method \(method)"))
            }
            return .success(handler)
        }
    }

    func connectionEnded(_ connection: TTRPCServerConnection) {
        _ = state.withLock { $0.connections.removeValue(forKey: ObjectIdentifier(connection)) }
    }
}
