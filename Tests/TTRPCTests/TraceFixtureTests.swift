import SwiftProtobuf
import Testing
@testable import TTRPC

/// Frames from containerd 1.6.20 / ttrpc 1.1.1 (shared/docs/shimv2.md section 2 and
/// shimv2-traces/shim-ttrpc-trace.log): our encoder must produce them byte for byte and our
/// decoder must read them.
enum TraceFixtures {
    static func bytes(_ hex: String) -> [UInt8] {
        let digits = Array(hex.filter { !$0.isWhitespace })
        return stride(from: 0, to: digits.count, by: 2).map { UInt8(String(digits[$0...$0 + 1]), radix: 16)! }
    }

    static func field(_ tag: UInt8, _ text: String) -> [UInt8] {
        [tag, UInt8(text.utf8.count)] + Array(text.utf8)
    }

    /// shimv2.md 2.1: `Connect{id: "t14"}` on stream 1, and the shim's answer.
    static let connectRequest =
        bytes("00000029 00000001 0100")
        + field(0x0a, "containerd.task.v2.Task") + field(0x12, "Connect") + [0x1a, 0x05] + field(0x0a, "t14")
    static let connectResponse = bytes("0000000a 00000001 0200  1208 08f88401 10988501")

    /// trace line 319: `Connect{id: "t13"}` with timeout_nano=4999988919 and namespace metadata.
    static let connectWithMetadata =
        bytes("00000056 00000001 0100")
        + field(0x0a, "containerd.task.v2.Task") + field(0x12, "Connect") + [0x1a, 0x05] + field(0x0a, "t13")
        + [0x20] + varint(4_999_988_919)
        + [0x2a, 37] + field(0x0a, "containerd-namespace-ttrpc") + field(0x12, "default")

    /// trace: `RESP(Pause) status.code=2 msg='cannot pause a paused container'` on stream 19.
    static let pauseError =
        bytes("00000025 00000013 0200  0a23")
        + bytes("0802121f63616e6e6f7420706175736520612070617573656420636f6e7461696e6572")

    /// trace: `RESP(Shutdown)` with an empty payload on stream 17: a bare header.
    static let emptyResponse = bytes("00000000 00000011 0200")

    static func varint(_ value: UInt64) -> [UInt8] {
        var value = value
        var out: [UInt8] = []
        while value >= 0x80 {
            out.append(UInt8(value & 0x7f) | 0x80)
            value >>= 7
        }
        return out + [UInt8(value)]
    }
}

@Suite struct TraceFixtureTests {
    @Test func headerRoundTrip() {
        let header = FrameHeader(length: 0x0102_0304, streamID: 0xA0B0_C0D1, type: FrameType.response, flags: 7)
        #expect(header.encoded == [1, 2, 3, 4, 0xA0, 0xB0, 0xC0, 0xD1, 2, 7])
        #expect(FrameHeader(decoding: header.encoded) == header)
        #expect(FrameHeader(decoding: [1, 2, 3]) == nil)
        #expect(!FrameHeader(length: 4 << 20, streamID: 1, type: 1).exceedsLimit)
        #expect(FrameHeader(length: (4 << 20) + 1, streamID: 1, type: 1).exceedsLimit)
    }

    @Test func encodesContainerdsConnectRequestByteForByte() throws {
        let frame = try Frame(
            streamID: 1, type: FrameType.request,
            payload: requestBytes(
                service: "containerd.task.v2.Task", method: "Connect", payload: TraceFixtures.field(0x0a, "t14")))
        #expect(frame.encoded == TraceFixtures.connectRequest)
    }

    @Test func encodesTimeoutAndMetadataLikeContainerd() throws {
        let frame = try Frame(
            streamID: 1, type: FrameType.request,
            payload: requestBytes(
                service: "containerd.task.v2.Task", method: "Connect", payload: TraceFixtures.field(0x0a, "t13"),
                timeoutNano: 4_999_988_919, metadata: [("containerd-namespace-ttrpc", "default")]))
        #expect(frame.encoded == TraceFixtures.connectWithMetadata)
    }

    @Test func decodesTracedFrames() throws {
        let fixture = TraceFixtures.connectWithMetadata
        let header = try #require(FrameHeader(decoding: fixture[0..<10]))
        #expect(header == FrameHeader(length: 86, streamID: 1, type: FrameType.request, flags: 0))
        let request = try Ttrpc_Request(serializedBytes: Array(fixture[10...]))
        #expect(request.service == "containerd.task.v2.Task")
        #expect(request.method == "Connect")
        #expect(request.timeoutNano == 4_999_988_919)
        #expect(request.metadata.map(\.key) == ["containerd-namespace-ttrpc"])
        #expect(request.metadata.map(\.value) == ["default"])

        let error = try Ttrpc_Response(serializedBytes: Array(TraceFixtures.pauseError[10...]))
        #expect(error.status.code == TTRPCStatusCode.unknown.rawValue)
        #expect(error.status.message == "cannot pause a paused container")
        #expect(error.payload.isEmpty)

        let empty = try #require(FrameHeader(decoding: TraceFixtures.emptyResponse))
        #expect(empty.length == 0 && empty.streamID == 17 && empty.type == FrameType.response)
        #expect(try !Ttrpc_Response(serializedBytes: [UInt8]()).hasStatus)
    }

    /// The server, fed containerd's bytes, answers with the shim's bytes (OK responses carry no
    /// status field at all).
    @Test func serverAnswersTheTracedConnectExactly() async throws {
        let server = TTRPCServer()
        server.register(service: "containerd.task.v2.Task", method: "Connect") { _, payload in
            #expect(payload == TraceFixtures.field(0x0a, "t14"))
            return TraceFixtures.bytes("08f88401 10988501")
        }
        let (connection, peer) = try serverWithRawPeer(server)
        defer { connection.close() }
        let reply = try await onOSThread {
            try peer.send(TraceFixtures.connectRequest)
            return try peer.read(TraceFixtures.connectResponse.count)
        }
        #expect(reply == TraceFixtures.connectResponse)
    }

    /// The client's first call on a connection is containerd's first frame, byte for byte, and
    /// it decodes the shim's traced error answer into the same status.
    @Test func clientSendsTracedBytesAndDecodesTracedError() async throws {
        let (client, peer) = try clientWithRawPeer()
        defer { client.close() }
        let call = Task {
            try await client.call(
                service: "containerd.task.v2.Task", method: "Connect", payload: TraceFixtures.field(0x0a, "t14"))
        }
        let sent = try await onOSThread { () throws -> [UInt8] in
            let sent = try peer.read(TraceFixtures.connectRequest.count)
            // Answer stream 1 with the traced Pause error body.
            try peer.send(
                header: FrameHeader(length: 0x25, streamID: 1, type: FrameType.response),
                payload: Array(TraceFixtures.pauseError[10...]))
            return sent
        }
        #expect(sent == TraceFixtures.connectRequest)
        await #expect(throws: TTRPCStatus(.unknown, "cannot pause a paused container")) { try await call.value }
    }
}
