#if canImport(Glibc)
import Glibc
#endif
import HostOS
import SwiftProtobuf
import Testing
@testable import TTRPC

/// The test's side of a socket, speaking bytes directly: it plays a hand-written ttrpc peer to
/// check exactly what the code under test puts on the wire and how it takes hostile input.
/// Every read is bounded by a poll timeout so a broken implementation fails instead of hanging.
struct RawPeer: Sendable {
    let socket: FileDescriptor

    struct Timeout: Error {}

    func send(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try socket.sendAll($0) }
    }

    func send(header: FrameHeader, payload: [UInt8] = []) throws {
        try send(header.encoded + payload)
    }

    /// Reads exactly `count` bytes, or throws `Timeout` / returns short at end of stream.
    func read(_ count: Int, timeoutMilliseconds: Int32 = 10_000) throws -> [UInt8] {
        var result = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            guard try socket.waitReadable(milliseconds: timeoutMilliseconds) else { throw Timeout() }
            let n = try result.withUnsafeMutableBytes { raw in
                try socket.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
            }
            if n == 0 { break }
            filled += n
        }
        return Array(result[0..<filled])
    }

    func readFrame() throws -> Frame {
        guard let header = FrameHeader(decoding: try read(FrameHeader.size)) else { throw Timeout() }
        return Frame(header: header, payload: try read(Int(header.length)))
    }

    func readResponse() throws -> (streamID: UInt32, response: Ttrpc_Response) {
        let frame = try readFrame()
        #expect(frame.header.type == FrameType.response)
        return (frame.header.streamID, try Ttrpc_Response(serializedBytes: frame.payload))
    }

    /// True when the peer has closed: the next read returns end of stream.
    func isAtEndOfStream(timeoutMilliseconds: Int32 = 10_000) throws -> Bool {
        try read(1, timeoutMilliseconds: timeoutMilliseconds).isEmpty
    }
}

/// Runs blocking work on a plain OS thread, so tests never block the Swift concurrency pool that
/// the server's handlers run on.
func onOSThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        do {
            _ = try OSThread.spawn(name: "ttrpc-test") {
                pthread_detach(pthread_self())
                continuation.resume(with: Result { try body() })
            }
        } catch {
            continuation.resume(throwing: error)
        }
    }
}

func requestBytes(
    service: String, method: String, payload: [UInt8] = [], timeoutNano: Int64 = 0,
    metadata: [(String, String)] = []
) throws -> [UInt8] {
    var request = Ttrpc_Request()
    request.service = service
    request.method = method
    request.payload = .init(payload)
    request.timeoutNano = timeoutNano
    request.metadata = metadata.map { key, value in
        var pair = Ttrpc_KeyValue()
        pair.key = key
        pair.value = value
        return pair
    }
    return try request.serializedBytes()
}

/// A server on one end of a socketpair, the raw peer on the other.
func serverWithRawPeer(_ server: TTRPCServer) throws -> (TTRPCServerConnection, RawPeer) {
    let (ours, theirs) = try UnixSocket.pair()
    let connection = try server.serve(SocketStream(ours))
    return (connection, RawPeer(socket: theirs))
}

/// A client on one end of a socketpair, the raw peer on the other.
func clientWithRawPeer() throws -> (TTRPCClient, RawPeer) {
    let (ours, theirs) = try UnixSocket.pair()
    return (try TTRPCClient(stream: SocketStream(ours)), RawPeer(socket: theirs))
}

/// A server with a few handlers the tests call, connected to a client over a socketpair.
func echoServer() -> TTRPCServer {
    let server = TTRPCServer()
    server.register(service: "test.Echo", method: "Echo") { _, payload in payload }
    server.register(service: "test.Echo", method: "Hang") { _, _ in
        try await Task.sleep(for: .seconds(3600))
        return []
    }
    server.register(service: "test.Echo", method: "Fail") { _, payload in
        throw TTRPCStatus(.notFound, "no such thing: " + String(decoding: payload, as: UTF8.self))
    }
    server.register(service: "test.Echo", method: "Timeout") { context, _ in
        Array(String(describing: context.timeout.map(\.components.seconds)).utf8)
    }
    server.register(service: "test.Echo", method: "Metadata") { context, _ in
        Array((context.metadata("k") ?? "none").utf8)
    }
    return server
}
