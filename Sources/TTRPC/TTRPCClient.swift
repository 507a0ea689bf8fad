#if canImport(Glibc)
import Glibc
#endif
#if canImport(FoundationEssentials)
import FoundationEssentials  // Data: the type SwiftProtobuf gives bytes fields
#else
import Foundation
#endif
import HostOS
import Logging
import SwiftProtobuf
import Synchronization
import Untrusted

/// A ttrpc client on one connection: concurrent calls multiplexed by stream id (odd, from 1,
/// increasing by 2, as containerd's client does), answered in any order.
///
/// `call` suspends without blocking a concurrency-pool thread; `callBlocking` is for plain OS
/// threads (device or vCPU threads must not wait on the pool). When the connection ends, every
/// pending call fails with `TTRPCConnectionError.closed`.
public final class TTRPCClient: Sendable {
    public typealias Completion = @Sendable (Result<[UInt8], any Error>) -> Void

    private struct State {
        var nextStreamID: UInt32 = 1
        var pending: [UInt32: Completion] = [:]
        var closed: TTRPCConnectionError?
    }

    private let state = Mutex(State())
    private let frames: FrameConnection
    private let completer: CompletionThread
    /// The server (a guest agent, say) triggers what it logs: rate-limited.
    private let logger: RateLimitedLogger

    /// Starts serving responses from `stream` (its reader and writer threads, each of which
    /// runs `confineThreads` first when given: see `FrameConnection.start`).
    public init(
        stream: any ByteStream, logger: Logger = Logger(label: "rund.ttrpc.client"),
        confineThreads: (@Sendable () throws -> Void)? = nil
    ) throws {
        self.logger = RateLimitedLogger(logger)
        frames = FrameConnection(stream: stream)
        completer = try CompletionThread(name: "ttrpc-cli-c")
        try frames.start(
            name: "ttrpc-cli",
            confine: confineThreads,
            onFrame: { [weak self] incoming in self?.receive(incoming) },
            onClose: { [weak self] reason in self?.failAll(.closed(reason: reason)) })
    }

    deinit {
        frames.close(reason: "client released")
        completer.close()
    }

    /// Calls `/service/method` with a serialized request; returns the serialized response.
    /// Throws `TTRPCStatus` for an error answer (DEADLINE_EXCEEDED when `timeout` passes first,
    /// CANCELED when the task is cancelled) and `TTRPCConnectionError` when the transport fails.
    public func call(
        service: String, method: String, payload: [UInt8],
        metadata: [(key: String, value: String)] = [], timeout: Duration? = nil
    ) async throws -> [UInt8] {
        let streamID = try reserveStreamID()
        let frame = try requestFrame(streamID, service, method, payload, metadata, timeout)
        let timer = TaskSlot()
        defer { timer.cancel() }
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { continuation in
                start(streamID, frame) { continuation.resume(with: $0) }
                if Task.isCancelled { complete(streamID, .failure(TTRPCStatus(.canceled, "call cancelled"))) }
                // Armed only once the call is registered, so it cannot fire too early to count.
                if let timeout {
                    timer.store(
                        Task { [weak self] in
                            guard (try? await Task.sleep(for: timeout)) != nil else { return }
                            self?.complete(streamID, .failure(Self.deadlineExceeded(service, method)))
                        })
                }
            }
        } onCancel: {
            complete(streamID, .failure(TTRPCStatus(.canceled, "call cancelled")))
        }
    }

    /// `call` for plain OS threads: blocks the calling thread until the answer, the timeout or
    /// the end of the connection. Never call it from the Swift concurrency pool.
    public func callBlocking(
        service: String, method: String, payload: [UInt8],
        metadata: [(key: String, value: String)] = [], timeout: Duration? = nil
    ) throws -> [UInt8] {
        let streamID = try reserveStreamID()
        let frame = try requestFrame(streamID, service, method, payload, metadata, timeout)
        let answer = BlockingQueue<Result<[UInt8], any Error>>()
        start(streamID, frame) { answer.push($0) }
        if let first = answer.pop(timeoutNanoseconds: timeout.map(\.nanoseconds)) {
            return try first.get()
        }
        // Timed out: fail the call unless its answer won the race, then take whichever came.
        complete(streamID, .failure(Self.deadlineExceeded(service, method)))
        return try answer.pop()!.get()
    }

    /// Ends the connection; pending calls fail with `TTRPCConnectionError.closed`.
    public func close() {
        frames.close(reason: "closed by the client")
    }

    /// Why the connection ended, or nil while it is open.
    public var closeReason: String? { frames.reasonClosed }

    // MARK: - Internals

    private static func deadlineExceeded(_ service: String, _ method: String) -> TTRPCStatus {
        TTRPCStatus(.deadlineExceeded, "/\(service)/\(method): deadline exceeded")
    }

    private func reserveStreamID() throws -> UInt32 {
        try state.withLock { state in
            if let closed = state.closed { throw closed }
            // The last odd id below 2^31 keeps clear of ids a signed peer might misread.
            guard state.nextStreamID < UInt32(Int32.max) else { throw TTRPCConnectionError.streamIDsExhausted }
            defer { state.nextStreamID += 2 }
            return state.nextStreamID
        }
    }

    private func requestFrame(
        _ streamID: UInt32, _ service: String, _ method: String, _ payload: [UInt8],
        _ metadata: [(key: String, value: String)], _ timeout: Duration?
    ) throws -> Frame {
        var request = Ttrpc_Request()
        request.service = service
        request.method = method
        request.payload = Data(payload)
        if let timeout { request.timeoutNano = Int64(clamping: timeout.nanoseconds) }
        request.metadata = metadata.map { entry in
            var pair = Ttrpc_KeyValue()
            pair.key = entry.key
            pair.value = entry.value
            return pair
        }
        let bytes: [UInt8] = try request.serializedBytes()
        guard bytes.count <= FrameHeader.maxPayloadLength else {
            throw TTRPCConnectionError.requestTooLarge(bytes: bytes.count)
        }
        return Frame(streamID: streamID, type: FrameType.request, payload: bytes)
    }

    /// Registers the completion for `streamID`, then sends the request.
    private func start(_ streamID: UInt32, _ frame: Frame, completion: @escaping Completion) {
        let closed = state.withLock { state -> TTRPCConnectionError? in
            if let closed = state.closed { return closed }
            state.pending[streamID] = completion
            return nil
        }
        if let closed {
            completion(.failure(closed))
        } else if !frames.send(frame) {
            complete(streamID, .failure(TTRPCConnectionError.closed(reason: frames.reasonClosed ?? "closed")))
        }
    }

    /// Completes a pending call once; later completions for the same id are ignored.
    private func complete(_ streamID: UInt32, _ result: Result<[UInt8], any Error>) {
        guard let completion = state.withLock({ $0.pending.removeValue(forKey: streamID) }) else { return }
        completer.run { completion(result) }
    }

    private func failAll(_ error: TTRPCConnectionError) {
        let completions = state.withLock { state in
            state.closed = error
            defer { state.pending = [:] }
            return Array(state.pending.values)
        }
        for completion in completions { completer.run { completion(.failure(error)) } }
    }

    private func receive(_ incoming: IncomingFrame) {
        guard let (streamID, result) = Self.answer(to: incoming) else {
            if case .frame(let frame) = incoming {
                logger.debug("ttrpc: ignoring frame type \(frame.header.type) on stream \(frame.header.streamID)")
            }
            return
        }
        complete(streamID, result)
    }

    /// What a frame from the server means for the call on its stream; nil for a frame a client
    /// ignores. Pure, so every input the peer can send is checked (Fuzz/Targets/TTRPCFrames).
    static func answer(to incoming: IncomingFrame) -> (streamID: UInt32, result: Result<[UInt8], any Error>)? {
        switch incoming {
        case .oversized(let header):
            return (
                header.streamID,
                .failure(
                    TTRPCStatus(
                        .resourceExhausted,
                        "message length \(header.length) exceed maximum message size of \(FrameHeader.maxPayloadLength)"))
            )
        case .frame(let frame):
            guard frame.header.type == FrameType.response else { return nil }
            let streamID = frame.header.streamID
            do {
                let response = try Ttrpc_Response(serializedBytes: frame.payload)
                if response.hasStatus, response.status.code != TTRPCStatusCode.ok.rawValue {
                    return (
                        streamID,
                        .failure(
                            TTRPCStatus(
                                TTRPCStatusCode(rawValue: response.status.code), response.status.message))
                    )
                }
                return (streamID, .success([UInt8](response.payload)))
            } catch {
                return (streamID, .failure(TTRPCConnectionError.malformedResponse(streamID: streamID, reason: "\(error)")))
            }
        }
    }
}

/// Runs a client's call completions on a thread of its own. A completion resumes an awaiting task,
/// and the concurrency runtime may start a worker thread from the thread that resumes it: that
/// must never be the connection's reader, which may be confined (its seccomp filter would pass to
/// the new worker, and creating threads is not in it).
final class CompletionThread: Sendable {
    private let jobs = BlockingQueue<@Sendable () -> Void>()

    init(name: String) throws {
        _ = try OSThread.spawn(name: name) { [jobs] in
            pthread_detach(pthread_self())
            while let job = jobs.pop() { job() }
        }
    }

    /// Queues `job`; once the thread is closed, runs it here instead.
    func run(_ job: @escaping @Sendable () -> Void) {
        if !jobs.push(job) { job() }
    }

    /// Lets the thread finish what is queued and end.
    func close() {
        jobs.close()
    }
}
