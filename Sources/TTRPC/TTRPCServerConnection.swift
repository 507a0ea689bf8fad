#if canImport(FoundationEssentials)
import FoundationEssentials  // Data: the type SwiftProtobuf gives bytes fields
#else
import Foundation
#endif
import Logging
import SwiftProtobuf
import Synchronization

/// One client connection of a `TTRPCServer`.
public final class TTRPCServerConnection: Sendable {
    private let frames: FrameConnection
    /// Running handler tasks by stream id, cancelled when the connection ends.
    private let running = Mutex<[UInt32: Task<Void, Never>]>([:])
    private let server: TTRPCServer

    /// Call `start()` once the server has recorded the connection.
    init(server: TTRPCServer, stream: any ByteStream) {
        self.server = server
        frames = FrameConnection(stream: stream)
    }

    func start() throws {
        try frames.start(
            name: "ttrpc-srv",
            onFrame: { [weak self] incoming in self?.receive(incoming) },
            onClose: { [weak self] reason in self?.ended(reason: reason) })
    }

    /// Closes the connection; handlers still running are cancelled.
    public func close() {
        frames.close(reason: "closed by the server")
    }

    public var isClosed: Bool { frames.isClosed }

    /// Calls whose handler has not finished yet (one past its deadline is cancelled and then ends).
    public var handlersRunning: Int { running.withLock { $0.count } }

    /// Why the connection ended (nil while open).
    public var closeReason: String? { frames.reasonClosed }

    /// Blocks the calling OS thread until the connection has ended or `timeout` passes; true
    /// when it has ended. Not for use on the Swift concurrency pool.
    public func waitUntilClosed(timeout: Duration? = nil) -> Bool {
        frames.waitUntilClosed(timeoutNanoseconds: timeout.map(\.nanoseconds))
    }

    private func receive(_ incoming: IncomingFrame) {
        switch Self.request(in: incoming) {
        case .ignored(let header):
            server.logger.debug("ttrpc: ignoring frame type \(header.type) on stream \(header.streamID)")
        case .refused(let streamID, let status):
            respond(streamID, status: status)
        case .call(let request, let streamID):
            dispatch(request, streamID: streamID)
        }
    }

    /// What the server does with one incoming frame.
    enum IncomingRequest {
        /// Not a request: other message types are ignored for forward compatibility, as ttrpc does.
        case ignored(FrameHeader)
        /// Answered with an error status without calling a handler.
        case refused(streamID: UInt32, TTRPCStatus)
        case call(Ttrpc_Request, streamID: UInt32)
    }

    /// Classifies a frame from the client. Pure, so every input the peer can send is checked
    /// (Fuzz/Targets/TTRPCFrames).
    static func request(in incoming: IncomingFrame) -> IncomingRequest {
        switch incoming {
        case .oversized(let header):
            // ttrpc's channel.recv discards the payload and the server answers on its stream id.
            return .refused(
                streamID: header.streamID,
                TTRPCStatus(
                    .resourceExhausted,
                    "message length \(header.length) exceed maximum message size of \(FrameHeader.maxPayloadLength)"))
        case .frame(let frame):
            guard frame.header.type == FrameType.request else { return .ignored(frame.header) }
            guard frame.header.streamID % 2 == 1 else {
                return .refused(
                    streamID: frame.header.streamID,
                    TTRPCStatus(
                        .invalidArgument, "StreamID must be odd for client initiated streams"))
            }
            do {
                return .call(try Ttrpc_Request(serializedBytes: frame.payload), streamID: frame.header.streamID)
            } catch {
                return .refused(streamID: frame.header.streamID, TTRPCStatus(.invalidArgument, "unmarshal request error: \(error)"))
            }
        }
    }

    /// Requests one connection may have in flight; more are refused, so a flooding peer cannot
    /// grow the server's tasks without bound.
    static let maxConcurrentRequests = 1024

    private func dispatch(_ request: Ttrpc_Request, streamID: UInt32) {
        guard running.withLock({ $0.count }) < Self.maxConcurrentRequests else {
            respond(
                streamID,
                status: TTRPCStatus(
                    .resourceExhausted, "too many concurrent requests on this connection (\(Self.maxConcurrentRequests))"))
            return
        }
        let handler: TTRPCServer.Handler
        switch server.handler(service: request.service, method: request.method) {
        case .success(let found): handler = found
        case .failure(let status):
            respond(streamID, status: status)
            return
        }
        let context = Self.context(of: request, streamID: streamID)
        let timeout = context.timeout
        let answered = Mutex(false)
        // Exactly one response per stream id, whichever of handler and deadline comes first.
        let answerOnce: @Sendable (Result<[UInt8], TTRPCStatus>) -> Bool = { [weak self] result in
            guard
                answered.withLock({ done in
                    defer { done = true }; return !done
                })
            else { return false }
            switch result {
            case .success(let payload): self?.respond(streamID, payload: payload)
            case .failure(let status): self?.respond(streamID, status: status)
            }
            return true
        }
        let payload = request.payload
        let deadline = TaskSlot()
        // Created under the lock so the task cannot finish (and unregister) before it is registered.
        let task = running.withLock { running in
            let task = Task { [weak self] in
                let result: Result<[UInt8], TTRPCStatus>
                do {
                    result = .success(try await handler(context, [UInt8](payload)))
                } catch {
                    result = .failure(TTRPCStatus(handlerError: error))
                }
                deadline.cancel()
                _ = answerOnce(result)
                self?.finished(streamID)
            }
            running[streamID] = task
            return task
        }
        if let timeout {
            // ttrpc hands the deadline to the handler's context; here the server also answers
            // at the deadline itself, so a handler that ignores cancellation cannot hang the call.
            deadline.store(
                Task {
                    guard (try? await Task.sleep(for: timeout)) != nil else { return }
                    if answerOnce(.failure(TTRPCStatus(.deadlineExceeded, "context deadline exceeded"))) {
                        task.cancel()
                    }
                })
        }
    }

    /// What the handler learns about a call from the client's request.
    static func context(of request: Ttrpc_Request, streamID: UInt32) -> TTRPCCallContext {
        TTRPCCallContext(
            service: request.service, method: request.method,
            metadata: request.metadata.map { (key: $0.key, value: $0.value) },
            timeout: request.timeoutNano > 0 ? .nanoseconds(request.timeoutNano) : nil, streamID: streamID)
    }

    private func finished(_ streamID: UInt32) {
        _ = running.withLock { $0.removeValue(forKey: streamID) }
    }

    private func respond(_ streamID: UInt32, payload: [UInt8]) {
        var response = Ttrpc_Response()
        response.payload = Data(payload)
        send(response, streamID: streamID)
    }

    private func respond(_ streamID: UInt32, status: TTRPCStatus) {
        var response = Ttrpc_Response()
        response.status.code = status.code.rawValue
        response.status.message = status.message
        send(response, streamID: streamID)
    }

    private func send(_ response: Ttrpc_Response, streamID: UInt32) {
        do {
            let bytes: [UInt8] = try response.serializedBytes()
            if bytes.count > FrameHeader.maxPayloadLength {
                // Never send what the peer must refuse: report the overflow instead.
                respond(
                    streamID,
                    status: TTRPCStatus(
                        .resourceExhausted, "response of \(bytes.count) bytes exceeds the ttrpc message limit"))
                return
            }
            frames.send(Frame(streamID: streamID, type: FrameType.response, payload: bytes))
        } catch {
            server.logger.error("ttrpc: cannot encode the response on stream \(streamID): \(error)")
        }
    }

    private func ended(reason: String) {
        server.logger.debug("ttrpc connection ended: \(reason)")
        let tasks = running.withLock { tasks in
            defer { tasks = [:] }
            return Array(tasks.values)
        }
        for task in tasks { task.cancel() }
        server.connectionEnded(self)
    }
}

extension TTRPCStatus {
    /// How a handler's error goes on the wire: statuses as they are, cancellation as CANCELED,
    /// anything else as UNKNOWN with its description (what the Go server does for plain errors).
    init(handlerError error: any Error) {
        switch error {
        case let status as TTRPCStatus: self = status
        case is CancellationError: self.init(.canceled, "context canceled")
        default: self.init(.unknown, "\(error)")
        }
    }
}

extension Duration {
    var nanoseconds: UInt64 {
        let (seconds, attoseconds) = components
        return UInt64(max(0, seconds)) * 1_000_000_000 + UInt64(max(0, attoseconds)) / 1_000_000_000
    }
}
