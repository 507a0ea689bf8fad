import HostOS
import Testing
@testable import TTRPC

/// The server against a hand-written peer: error statuses and hostile input as ttrpc 1.1.1
/// answers them (shimv2.md 2.3), and the server keeps serving.
@Suite struct ServerProtocolTests {
    @Test func unknownServiceAndMethodAreUnimplemented() async throws {
        let (connection, peer) = try serverWithRawPeer(echoServer())
        defer { connection.close() }
        let (service, method) = try await onOSThread {
            try peer.send(
                Frame(
                    streamID: 1, type: FrameType.request,
                    payload: requestBytes(service: "containerd.task.v2.Nope", method: "Echo")
                ).encoded)
            let service = try peer.readResponse()
            try peer.send(
                Frame(
                    streamID: 3, type: FrameType.request,
                    payload: requestBytes(service: "test.Echo", method: "Bogus")
                ).encoded)
            return (service, try peer.readResponse())
        }
        #expect(service.streamID == 1)
        #expect(service.response.status.code == 12)
        #expect(service.response.status.message == "service containerd.task.v2.Nope")
        #expect(method.streamID == 3)
        #expect(method.response.status.code == 12)
        #expect(method.response.status.message == "method Bogus")
    }

    @Test func evenStreamIDIsInvalidArgument() async throws {
        let (connection, peer) = try serverWithRawPeer(echoServer())
        defer { connection.close() }
        let answer = try await onOSThread {
            try peer.send(
                Frame(
                    streamID: 2, type: FrameType.request,
                    payload: requestBytes(service: "test.Echo", method: "Echo")
                ).encoded)
            return try peer.readResponse()
        }
        #expect(answer.streamID == 2)
        #expect(answer.response.status.code == 3)
        #expect(answer.response.status.message == "StreamID must be odd for client initiated streams")
    }

    /// A header announcing more than 4 MiB: the payload is discarded, RESOURCE_EXHAUSTED goes
    /// back on that stream id, and the same connection keeps working.
    @Test func oversizedFrameIsRefusedAndTheConnectionContinues() async throws {
        let (connection, peer) = try serverWithRawPeer(echoServer())
        defer { connection.close() }
        let length = FrameHeader.maxPayloadLength + 1
        let (refused, echoed) = try await onOSThread {
            try peer.send(header: FrameHeader(length: UInt32(length), streamID: 5, type: FrameType.request))
            try peer.send([UInt8](repeating: 0xee, count: length))
            let refused = try peer.readResponse()
            try peer.send(
                Frame(
                    streamID: 7, type: FrameType.request,
                    payload: requestBytes(service: "test.Echo", method: "Echo", payload: [42])
                ).encoded)
            return (refused, try peer.readResponse())
        }
        #expect(refused.streamID == 5)
        #expect(refused.response.status.code == 8)
        #expect(refused.response.status.message == "message length 4194305 exceed maximum message size of 4194304")
        #expect(echoed.streamID == 7)
        #expect(echoed.response.payload == .init([42]))
    }

    @Test func garbageRequestBodyIsInvalidArgument() async throws {
        let (connection, peer) = try serverWithRawPeer(echoServer())
        defer { connection.close() }
        let answer = try await onOSThread {
            // 0xff... is not a valid protobuf field key sequence.
            try peer.send(Frame(streamID: 9, type: FrameType.request, payload: [UInt8](repeating: 0xff, count: 16)).encoded)
            return try peer.readResponse()
        }
        #expect(answer.streamID == 9)
        #expect(answer.response.status.code == 3)
        #expect(answer.response.status.message.hasPrefix("unmarshal request error"))
    }

    @Test func undecodablePayloadOfATypedHandlerIsInternal() async throws {
        let server = TTRPCServer()
        server.register(service: "test.Typed", method: "Get") { (request: Ttrpc_KeyValue, _) in request }
        let (connection, peer) = try serverWithRawPeer(server)
        defer { connection.close() }
        let answer = try await onOSThread {
            try peer.send(
                Frame(
                    streamID: 1, type: FrameType.request,
                    payload: requestBytes(service: "test.Typed", method: "Get", payload: [0xff, 0xff])
                ).encoded)
            return try peer.readResponse()
        }
        #expect(answer.response.status.code == 13)
        #expect(answer.response.status.message.hasPrefix("ttrpc: error unmarshalling payload"))
    }

    /// Frames of other types (responses, ttrpc 1.2 data frames, unknown) get no answer.
    @Test func framesOfOtherTypesAreIgnored() async throws {
        let (connection, peer) = try serverWithRawPeer(echoServer())
        defer { connection.close() }
        let answer = try await onOSThread {
            let body = try requestBytes(service: "test.Echo", method: "Echo", payload: [1])
            for type: UInt8 in [FrameType.response, FrameType.data, 0x7f] {
                try peer.send(Frame(streamID: 11, type: type, payload: body).encoded)
            }
            try peer.send(Frame(streamID: 13, type: FrameType.request, payload: body).encoded)
            return try peer.readResponse()
        }
        #expect(answer.streamID == 13)
        #expect(answer.response.payload == .init([1]))
    }

    /// Truncated headers and bodies end that connection only; the server serves the next one.
    @Test(arguments: [
        [UInt8]([0, 0, 0]),  // half a header
        FrameHeader(length: 100, streamID: 1, type: FrameType.request).encoded + [1, 2, 3],  // short body
        FrameHeader(length: UInt32.max, streamID: 1, type: FrameType.request).encoded + [UInt8](repeating: 0, count: 1000),
    ])
    func truncatedInputClosesOnlyThatConnection(bytes: [UInt8]) async throws {
        let server = echoServer()
        let (broken, peer) = try serverWithRawPeer(server)
        let ended = try await onOSThread {
            try peer.send(bytes)
            peer.socket.shutdownBoth()
            return broken.waitUntilClosed(timeout: .seconds(10))
        }
        #expect(ended)
        #expect(broken.closeReason?.contains("ended inside a frame") == true)

        let (healthy, other) = try serverWithRawPeer(server)
        defer { healthy.close() }
        let answer = try await onOSThread {
            try other.send(
                Frame(
                    streamID: 1, type: FrameType.request,
                    payload: requestBytes(service: "test.Echo", method: "Echo", payload: [7])
                ).encoded)
            return try other.readResponse()
        }
        #expect(answer.response.payload == .init([7]))
        #expect(server.connectionCount == 1)
    }

    /// The handler gets the request's deadline and metadata; a handler outliving its deadline is
    /// answered DEADLINE_EXCEEDED.
    @Test func deadlineAndMetadataReachTheHandler() async throws {
        let (connection, peer) = try serverWithRawPeer(echoServer())
        defer { connection.close() }
        let (timeout, metadata, expired) = try await onOSThread {
            try peer.send(
                Frame(
                    streamID: 1, type: FrameType.request,
                    payload: requestBytes(
                        service: "test.Echo", method: "Timeout", timeoutNano: 5_000_000_000)
                ).encoded)
            let timeout = try peer.readResponse()
            try peer.send(
                Frame(
                    streamID: 3, type: FrameType.request,
                    payload: requestBytes(
                        service: "test.Echo", method: "Metadata", metadata: [("k", "v1"), ("k", "v2")])
                ).encoded)
            let metadata = try peer.readResponse()
            try peer.send(
                Frame(
                    streamID: 5, type: FrameType.request,
                    payload: requestBytes(
                        service: "test.Echo", method: "Hang", timeoutNano: 50_000_000)
                ).encoded)
            return (timeout, metadata, try peer.readResponse())
        }
        #expect(String(decoding: timeout.response.payload, as: UTF8.self) == "Optional(5)")
        #expect(String(decoding: metadata.response.payload, as: UTF8.self) == "v1")
        #expect(expired.streamID == 5)
        #expect(expired.response.status.code == 4)
    }

    /// A peer flooding requests that never finish is refused past the per-connection limit.
    @Test func floodOfConcurrentRequestsIsRefused() async throws {
        let (connection, peer) = try serverWithRawPeer(echoServer())
        defer { connection.close() }
        let limit = TTRPCServerConnection.maxConcurrentRequests
        let refused = try await onOSThread {
            let hang = try requestBytes(service: "test.Echo", method: "Hang")
            var frames: [UInt8] = []
            for index in 0...limit {
                frames += Frame(streamID: UInt32(2 * index + 1), type: FrameType.request, payload: hang).encoded
            }
            try peer.send(frames)
            return try peer.readResponse()
        }
        #expect(refused.streamID == UInt32(2 * limit + 1))
        #expect(refused.response.status.code == 8)
    }

    /// A peer that sends requests but never reads the answers is cut off once the queued
    /// responses pass the limit, instead of growing the server's memory.
    @Test func peerThatNeverReadsIsDisconnected() async throws {
        let server = TTRPCServer()
        let big = [UInt8](repeating: 7, count: FrameHeader.maxPayloadLength - 64)
        server.register(service: "s", method: "Big") { _, _ in big }
        let (connection, peer) = try serverWithRawPeer(server)
        let ended = try await onOSThread {
            let request = try requestBytes(service: "s", method: "Big")
            for index in 0..<40 {
                try peer.send(Frame(streamID: UInt32(2 * index + 1), type: FrameType.request, payload: request).encoded)
            }
            return connection.waitUntilClosed(timeout: .seconds(30))
        }
        #expect(ended)
        #expect(connection.closeReason?.contains("not reading") == true)
    }

    @Test func listenerServesConnectionsUntilShutdown() async throws {
        let path = "/tmp/rund-ttrpc-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max)).sock"
        defer { unlink(path) }
        let server = echoServer()
        try server.serve(listener: UnixSocket.listen(path: path))
        let first = RawPeer(socket: try UnixSocket.connect(path: path))
        let client = try TTRPCClient(stream: SocketStream.connect(path: path))
        defer { client.close() }
        // One hostile connection dies; the other keeps working.
        let firstEnded = try await onOSThread {
            try first.send([0xde, 0xad])
            first.socket.shutdownBoth()
            return try first.isAtEndOfStream()
        }
        #expect(firstEnded)
        #expect(try await client.call(service: "test.Echo", method: "Echo", payload: [5]) == [5])
        server.shutdown()
        await #expect(throws: TTRPCConnectionError.self) {
            _ = try await client.call(service: "test.Echo", method: "Echo", payload: [6])
        }
    }
}

#if canImport(Glibc)
import Glibc
#endif
