#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Synchronization
import Testing
@testable import TTRPC

/// Our client against our server over a socketpair.
@Suite struct ClientServerTests {
    private func connected(_ server: TTRPCServer = echoServer()) throws -> (TTRPCClient, TTRPCServerConnection) {
        let (a, b) = try SocketStream.pair()
        return (try TTRPCClient(stream: a), try server.serve(b))
    }

    /// Many calls in flight at once on one connection, each answered with its own payload; a
    /// call that is not answered until the fast ones are all done does not hold them up (if it
    /// did, they would never finish and the time limit would end the test).
    @Test(.timeLimit(.minutes(2))) func concurrentCallsAreMultiplexed() async throws {
        let gate = Gate()
        let server = echoServer()
        server.register(service: "test.Echo", method: "Gated") { _, payload in
            await gate.wait()
            return payload
        }
        let (client, connection) = try connected(server)
        defer { connection.close() }
        let finishOrder = Recorder()
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask {
                let answer = try await client.call(service: "test.Echo", method: "Gated", payload: Array("slow".utf8))
                #expect(answer == Array("slow".utf8))
                finishOrder.append("slow")
            }
            try await withThrowingTaskGroup(of: Void.self) { fast in
                for index in 0..<64 {
                    fast.addTask {
                        let payload = Array("call \(index)".utf8) + [UInt8](repeating: UInt8(index), count: index * 1000)
                        let answer = try await client.call(service: "test.Echo", method: "Echo", payload: payload)
                        #expect(answer == payload)
                        finishOrder.append("fast")
                    }
                }
                try await fast.waitForAll()
            }
            gate.open()
            try await group.waitForAll()
        }
        #expect(finishOrder.items.count == 65 && finishOrder.items.last == "slow")
    }

    @Test func streamIDsAreOddAndIncreasing() async throws {
        let (client, peer) = try clientWithRawPeer()
        defer { client.close() }
        let calls = Task {
            for _ in 0..<3 { _ = try await client.call(service: "s", method: "m", payload: []) }
        }
        let ids = try await onOSThread { () throws -> [UInt32] in
            var ids: [UInt32] = []
            for _ in 0..<3 {
                let frame = try peer.readFrame()
                ids.append(frame.header.streamID)
                try peer.send(header: FrameHeader(length: 0, streamID: frame.header.streamID, type: FrameType.response))
            }
            return ids
        }
        try await calls.value
        #expect(ids == [1, 3, 5])
    }

    @Test func errorStatusesReachTheCaller() async throws {
        let (client, connection) = try connected()
        defer { connection.close() }
        await #expect(throws: TTRPCStatus(.notFound, "no such thing: x")) {
            _ = try await client.call(service: "test.Echo", method: "Fail", payload: Array("x".utf8))
        }
        await #expect(throws: TTRPCStatus(.unimplemented, "method Nope")) {
            _ = try await client.call(service: "test.Echo", method: "Nope", payload: [])
        }
        await #expect(throws: TTRPCStatus(.unimplemented, "service test.Missing")) {
            _ = try await client.call(service: "test.Missing", method: "Echo", payload: [])
        }
        #expect(try await client.call(service: "test.Echo", method: "Echo", payload: [1]) == [1])
    }

    @Test func plainHandlerErrorsAreUnknown() async throws {
        struct Broken: Error, CustomStringConvertible { var description: String { "disk on fire" } }
        let server = TTRPCServer()
        server.register(service: "s", method: "m") { _, _ in throw Broken() }
        let (client, connection) = try connected(server)
        defer { connection.close() }
        await #expect(throws: TTRPCStatus(.unknown, "disk on fire")) {
            _ = try await client.call(service: "s", method: "m", payload: [])
        }
    }

    @Test func timeoutFailsTheCallAndTheConnectionStaysUsable() async throws {
        let (client, connection) = try connected()
        defer { connection.close() }
        await #expect(throws: TTRPCStatus.self) {
            _ = try await client.call(service: "test.Echo", method: "Hang", payload: [], timeout: .milliseconds(100))
        }
        do {
            _ = try await client.call(service: "test.Echo", method: "Hang", payload: [], timeout: .milliseconds(50))
            Issue.record("a hanging call returned before its timeout")
        } catch let status as TTRPCStatus {
            #expect(status.code == .deadlineExceeded)
        }
        #expect(try await client.call(service: "test.Echo", method: "Echo", payload: [9]) == [9])
    }

    @Test func cancellingTheTaskCancelsTheCall() async throws {
        let (client, connection) = try connected()
        defer { connection.close() }
        let call = Task { try await client.call(service: "test.Echo", method: "Hang", payload: []) }
        try await Task.sleep(for: .milliseconds(50))
        call.cancel()
        await #expect(throws: TTRPCStatus(.canceled, "call cancelled")) { _ = try await call.value }
    }

    /// The server going away fails every pending call with a connection error, and later calls
    /// fail at once.
    @Test func connectionLossFailsPendingCalls() async throws {
        let (client, connection) = try connected()
        let pending = (0..<3).map { _ in
            Task { try await client.call(service: "test.Echo", method: "Hang", payload: []) }
        }
        try await Task.sleep(for: .milliseconds(100))
        connection.close()
        for call in pending {
            await #expect(throws: TTRPCConnectionError.self) { _ = try await call.value }
        }
        #expect(client.closeReason != nil)
        await #expect(throws: TTRPCConnectionError.self) {
            _ = try await client.call(service: "test.Echo", method: "Echo", payload: [])
        }
    }

    @Test func blockingCallsFromPlainThreads() async throws {
        let (client, connection) = try connected()
        defer { connection.close() }
        let (echoed, timedOut) = try await onOSThread { () throws -> ([UInt8], TTRPCStatusCode?) in
            let echoed = try client.callBlocking(service: "test.Echo", method: "Echo", payload: [3, 4])
            do {
                _ = try client.callBlocking(service: "test.Echo", method: "Hang", payload: [], timeout: .milliseconds(50))
                return (echoed, nil)
            } catch let status as TTRPCStatus {
                return (echoed, status.code)
            }
        }
        #expect(echoed == [3, 4])
        #expect(timedOut == .deadlineExceeded)
    }

    @Test func requestOverTheLimitIsRefusedLocally() async throws {
        let (client, connection) = try connected()
        defer { connection.close() }
        await #expect(throws: TTRPCConnectionError.self) {
            _ = try await client.call(service: "s", method: "m", payload: [UInt8](repeating: 0, count: FrameHeader.maxPayloadLength))
        }
        #expect(try await client.call(service: "test.Echo", method: "Echo", payload: [1]) == [1])
    }

    /// A hostile server: oversized, malformed and unsolicited responses fail only the call they
    /// name, and the client keeps working.
    @Test func hostileResponsesAreContained() async throws {
        let (client, peer) = try clientWithRawPeer()
        defer { client.close() }
        // One call's request is read before the next is made, so which is which does not hang on scheduling.
        let oversized = Task { try await client.call(service: "s", method: "m", payload: []) }
        let first = try await onOSThread { try peer.readFrame().header.streamID }
        let malformed = Task { try await client.call(service: "s", method: "m", payload: []) }
        try await onOSThread {
            let second = try peer.readFrame().header.streamID
            try peer.send(
                header: FrameHeader(length: 99, streamID: 1001, type: FrameType.response),
                payload: [UInt8](repeating: 0, count: 99))
            let length = FrameHeader.maxPayloadLength + 10
            try peer.send(header: FrameHeader(length: UInt32(length), streamID: first, type: FrameType.response))
            try peer.send([UInt8](repeating: 0x0a, count: length))
            try peer.send(header: FrameHeader(length: 2, streamID: second, type: FrameType.response), payload: [0xff, 0xff])
        }
        do {
            _ = try await oversized.value
            Issue.record("an oversized response was accepted")
        } catch let status as TTRPCStatus {
            #expect(status.code == .resourceExhausted)
        }
        await #expect(throws: TTRPCConnectionError.self) { _ = try await malformed.value }
        let healthy = Task { try await client.call(service: "s", method: "m", payload: []) }
        try await onOSThread {
            let id = try peer.readFrame().header.streamID
            try peer.send(header: FrameHeader(length: 4, streamID: id, type: FrameType.response), payload: [0x12, 0x02, 0x08, 0x01])
        }
        #expect(try await healthy.value == [0x08, 0x01])
    }

    /// A hostile server's error text (escape sequences, 2 MiB of it) reaches the caller as sent,
    /// but its description, what ends up on a terminal or in a log, is inert and short.
    @Test func hostileStatusMessagesAreShownEscapedAndBounded() async throws {
        let (client, peer) = try clientWithRawPeer()
        defer { client.close() }
        let hostile = "\u{1b}]0;pwned\u{07}\u{1b}[2J\r\u{202e}" + String(repeating: "\u{1b}[31mX", count: 2 << 18)
        let call = Task { try await client.call(service: "s", method: "m", payload: []) }
        try await onOSThread {
            let id = try peer.readFrame().header.streamID
            var response = Ttrpc_Response()
            response.status.code = TTRPCStatusCode.internal.rawValue
            response.status.message = hostile
            let payload: [UInt8] = try response.serializedBytes()
            try peer.send(header: FrameHeader(length: UInt32(payload.count), streamID: id, type: FrameType.response), payload: payload)
        }
        do {
            _ = try await call.value
            Issue.record("the error answer was taken as success")
        } catch let status as TTRPCStatus {
            #expect(status.code == .internal)
            #expect(status.message == hostile)
            let shown = "\(status)"
            #expect(shown.utf8.count < 600)
            #expect(shown.hasPrefix("\\x1b]0;pwned\\x07\\x1b[2J\\r\\u{202e}"))
            #expect(shown.hasSuffix(" more bytes): internal"))
            #expect(
                shown.unicodeScalars.allSatisfy {
                    $0.value >= 0x20 && $0.value != 0x7f && !(0x80...0x9f).contains($0.value) && $0 != "\u{202e}"
                })
        }
    }
}

/// Records strings from concurrent tasks.
/// Closed until `open()`: whoever waits before that waits; whoever waits after does not.
final class Gate: Sendable {
    private let state = Mutex<(open: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    func wait() async {
        await withCheckedContinuation { continuation in
            let alreadyOpen = state.withLock { state in
                if !state.open { state.waiters.append(continuation) }
                return state.open
            }
            if alreadyOpen { continuation.resume() }
        }
    }
    func open() {
        let waiters = state.withLock { state in
            state.open = true
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }
}

final class Recorder: Sendable {
    private let storage = Mutex<[String]>([])
    func append(_ item: String) { storage.withLock { $0.append(item) } }
    var items: [String] { storage.withLock { $0 } }
}
