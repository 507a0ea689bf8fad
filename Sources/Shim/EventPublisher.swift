#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import HostOS
import Logging
import SwiftProtobuf
import Synchronization
import TTRPC

/// Publishes task events to containerd in the order they were queued: one queue, one sender,
/// over one ttrpc connection to `TTRPC_ADDRESS` (`containerd.services.events.ttrpc.v1.Events/
/// Forward`), reconnected when it breaks. A failed event is retried a few times, then dropped
/// with a log line: events never hold up a task (ctr and CRI follow tasks through Wait).
final class EventPublisher: Sendable {
    static let service = "containerd.services.events.ttrpc.v1.Events"
    static let attempts = 5

    struct Item: Sendable {
        var topic: String
        var event: Google_Protobuf_Any
        var timestamp: Google_Protobuf_Timestamp
    }

    private let address: String?
    private let namespace: String
    private let logger: Logger
    private let continuation: AsyncStream<Item>.Continuation
    private let pending = Mutex(0)
    private let client = Mutex<TTRPCClient?>(nil)

    /// `address`: containerd's ttrpc socket (nil: events are only logged).
    init(address: String?, namespace: String, logger: Logger) {
        self.address = address
        self.namespace = namespace
        self.logger = logger
        let (stream, continuation) = AsyncStream<Item>.makeStream()
        self.continuation = continuation
        Task { [self] in
            for await item in stream {
                await send(item)
                pending.withLock { $0 -= 1 }
            }
        }
    }

    /// Queues `event` under `topic` (e.g. "/tasks/exit"); its type URL is its bare proto name,
    /// as containerd's typeurl registry expects (no type.googleapis.com/ prefix).
    func publish(topic: String, _ event: some SwiftProtobuf.Message) {
        var any = Google_Protobuf_Any()
        any.typeURL = type(of: event).protoMessageName
        do {
            any.value = try event.serializedData()
        } catch {
            logger.error("cannot encode event \(topic): \(error)")
            return
        }
        pending.withLock { $0 += 1 }
        continuation.yield(Item(topic: topic, event: any, timestamp: .now()))
    }

    /// Waits until every queued event went out (or was dropped), at most `limit`.
    func flush(within limit: Duration) async {
        let deadline = ContinuousClock.now + limit
        while pending.withLock({ $0 }) > 0 && ContinuousClock.now < deadline {
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    private func send(_ item: Item) async {
        guard let address else {
            logger.debug("event (not sent: no TTRPC_ADDRESS)", metadata: ["topic": "\(item.topic)"])
            return
        }
        var request = Containerd_Services_Events_Ttrpc_V1_ForwardRequest()
        request.envelope.timestamp = item.timestamp
        request.envelope.namespace = namespace
        request.envelope.topic = item.topic
        request.envelope.event = item.event
        for attempt in 1...Self.attempts {
            do {
                let connection = try connection(address)
                let _: Google_Protobuf_Empty = try await connection.call(
                    service: Self.service, method: "Forward", request: request,
                    metadata: [(key: "containerd-namespace-ttrpc", value: namespace)], timeout: .seconds(5))
                logger.debug("event forwarded", metadata: ["topic": "\(item.topic)"])
                return
            } catch {
                client.withLock { $0 = nil }
                if attempt == Self.attempts {
                    logger.warning("dropped event \(item.topic) after \(attempt) attempts: \(error)")
                    return
                }
                try? await Task.sleep(for: .seconds(attempt))
            }
        }
    }

    private func connection(_ address: String) throws -> TTRPCClient {
        try client.withLock { client in
            if let client, client.closeReason == nil { return client }
            let fresh = try TTRPCClient(stream: SocketStream.connect(path: address), logger: logger)
            client = fresh
            return fresh
        }
    }
}
