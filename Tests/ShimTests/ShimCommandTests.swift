#if canImport(Glibc)
import Glibc
#endif
import HostOS
@testable import Shim
import SwiftProtobuf
import Testing
import TTRPC

private let isRoot = getuid() == 0

/// The real binary run as containerd runs it (shimv2.md 1.3, 1.5): `start` in a bundle prints
/// only the address of a listening shim; a second `start` for the same group reuses it;
/// `delete` prints one DeleteResponse and leaves no shim and no socket, also after a SIGKILL.
@Suite(.serialized, .enabled(if: isRoot, "needs root: the shim listens in /run/containerd/s"))
struct ShimCommandTests {
    static let binary: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/ShimTests/<file>
        return parts.joined(separator: "/") + "/.build/debug/containerd-shim-rund-v2"
    }()

    final class Bundle {
        let path: String
        let id: String
        init(annotations: String = "{}") throws {
            var template = Array("/tmp/shim-bundle-XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { throw SystemError.last("mkdtemp") }
            path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            id = "shimtest-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
            try FileDescriptor.open(path + "/config.json", O_WRONLY | O_CREAT, mode: 0o600)
                .writeAll(#"{"process":{"args":["true"],"cwd":"/"},"annotations":\#(annotations)}"#)
        }
        deinit { try? FileSystem.removeTree(path) }

        func run(_ action: String, id: String? = nil) throws -> Subprocess.Result {
            let flags = "-namespace shimtest -address /tmp/shimtest-containerd.sock -publish-binary /bin/true -id \(id ?? self.id)"
            let bundleFlag = action == "delete" ? " -bundle \(path)" : ""
            return try Subprocess.run([
                "sh", "-c", "cd \(path) && exec \(ShimCommandTests.binary) \(flags)\(bundleFlag) \(action) </dev/null 2>&1",
            ])
        }

        var shimPID: Int32? {
            guard let text = try? FileDescriptor.open(path + "/shim.pid", O_RDONLY).readToEnd() else { return nil }
            return String(decoding: text, as: UTF8.self).split(separator: " ").first.flatMap { Int32($0) }
        }
    }

    static func call<Response: SwiftProtobuf.Message>(
        _ path: String, _ method: String, _ request: some SwiftProtobuf.Message
    ) async throws -> Response {
        let client = try TTRPCClient(stream: SocketStream.connect(path: path))
        defer { client.close() }
        return try await client.call(service: "containerd.task.v2.Task", method: method, request: request, timeout: .seconds(30))
    }

    /// The shim flushes its events for up to 2 s before it exits and must then be reaped: 30 s
    /// leaves a loaded machine room.
    static func waitGone(_ pid: Int32) -> Bool {
        for _ in 0..<3000 {
            if kill(pid, 0) != 0 { return true }
            usleep(10_000)
        }
        return false
    }

    @Test func startPrintsOnlyTheAddressOfAListeningShimThatShutdownEnds() async throws {
        let bundle = try Bundle()
        let started = try bundle.run("start")
        #expect(started.status == 0)
        let address = started.stdoutText
        let path = ShimNames.socketPath(containerdAddress: "/tmp/shimtest-containerd.sock", namespace: "shimtest", group: bundle.id)
        #expect(address == "unix://\(path)\n")
        let written = try FileDescriptor.open(bundle.path + "/address", O_RDONLY).readToEnd()
        #expect(String(decoding: written, as: UTF8.self) == "unix://\(path)")
        let pid = try #require(bundle.shimPID)

        let connected: Containerd_Task_V2_ConnectResponse = try await Self.call(
            path, "Connect", Containerd_Task_V2_ConnectRequest.with { $0.id = bundle.id })
        #expect(connected.shimPid == UInt32(pid) && connected.taskPid == 0)
        await #expect {
            let _: Containerd_Task_V2_StateResponse = try await Self.call(
                path, "State", Containerd_Task_V2_StateRequest.with { $0.id = "nope" })
        } throws: {
            ($0 as? TTRPCStatus)?.code == .notFound
        }
        await #expect {
            let _: Google_Protobuf_Empty = try await Self.call(path, "Checkpoint", Containerd_Task_V2_CheckpointTaskRequest())
        } throws: {
            ($0 as? TTRPCStatus)?.code == .unimplemented
        }
        // A second start for the same group finds it.
        let again = try bundle.run("start")
        #expect(again.stdoutText == address && bundle.shimPID == pid)

        let _: Google_Protobuf_Empty = try await Self.call(path, "Shutdown", Containerd_Task_V2_ShutdownRequest.with { $0.id = bundle.id })
        #expect(Self.waitGone(pid))
        #expect(!FileSystem.exists(path))
        let deleted = try bundle.run("delete")
        #expect(deleted.status == 0)
        let response = try Containerd_Task_V2_DeleteResponse(serializedBytes: deleted.stdout)
        #expect(response.pid == UInt32(pid) && response.exitStatus == 137 && response.exitedAt.seconds > 0)
    }

    @Test func deleteAfterASIGKILLReclaimsTheSocket() async throws {
        let bundle = try Bundle()
        #expect(try bundle.run("start").status == 0)
        let pid = try #require(bundle.shimPID)
        let path = ShimNames.socketPath(containerdAddress: "/tmp/shimtest-containerd.sock", namespace: "shimtest", group: bundle.id)
        kill(pid, SIGKILL)
        #expect(Self.waitGone(pid))
        #expect(FileSystem.exists(path))  // What a crash leaves.
        let deleted = try bundle.run("delete")
        #expect(deleted.status == 0)
        #expect(try Containerd_Task_V2_DeleteResponse(serializedBytes: deleted.stdout).exitStatus == 137)
        #expect(!FileSystem.exists(path))
        // A stale socket does not stop the next start.
        let fresh = try Bundle()
        #expect(try fresh.run("start").status == 0)
        let freshPID = try #require(fresh.shimPID)
        _ = try fresh.run("delete")
        #expect(Self.waitGone(freshPID))
    }

    @Test func aBundleWithoutConfigFailsStartWithOneLine() throws {
        let bundle = try Bundle()
        try FileSystem.unlink(at: nil, bundle.path + "/config.json")
        let started = try bundle.run("start")
        #expect(started.status == 1)
        #expect(started.stdoutText.hasPrefix("rund shim start: cannot read the bundle's config.json"))
        #expect(started.stdoutText.split(separator: "\n").count == 1)
    }
}
