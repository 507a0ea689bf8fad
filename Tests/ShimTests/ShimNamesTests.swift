import FoundationEssentials
@testable import Shim
import SwiftProtobuf
import Testing

/// Names and bytes containerd checks: the socket path it would compute itself, the
/// DeleteResponse it decodes, the Any type URLs its registry knows.
struct ShimNamesTests {
    @Test func theSocketPathIsTheGoShimsOne() {
        // containerd 1.6 runtime/v2/shim/util_unix.go SocketAddress: sha256 of
        // filepath.Join(address, namespace, id) (shimv2.md's 3ad03c04... example came through
        // its tracing wrapper, which does not reproduce from these inputs).
        let path = ShimNames.socketPath(containerdAddress: "/run/ctrtest/c.sock", namespace: "default", group: "t1")
        #expect(path == "/run/containerd/s/5eee0f74c0bbe82942a2073df44c65af4e01ae115beb33e6e38a1bf0195a3eb0")
        #expect(path.utf8.count == 82)
    }

    @Test func aPodsContainersShareItsSandboxsShim() {
        #expect(ShimNames.group(id: "c1", annotations: [ShimNames.sandboxIDAnnotation: "pod"]) == "pod")
        #expect(ShimNames.group(id: "c1", annotations: ["other": "x"]) == "c1")
    }

    @Test func sandboxIDsAreValidDistinctAndStable() throws {
        let long = String(repeating: "a", count: 76)
        let id = ShimNames.sandboxID(namespace: "default", id: long)
        #expect(id.count <= 64 && id.hasPrefix("ctrd-"))
        #expect(ShimNames.sandboxID(namespace: "default", id: "t1") != ShimNames.sandboxID(namespace: "k8s.io", id: "t1"))
        #expect(ShimNames.sandboxID(namespace: "default", id: "t1") == ShimNames.sandboxID(namespace: "default", id: "t1"))
    }

    @Test func theDeleteResponseIsByteForByteTheRuncShims() throws {
        // shimv2.md 1.5: pid 13029, exit 137, exited_at {1795313757, 852653514}
        let response = Containerd_Task_V2_DeleteResponse.with {
            $0.pid = 13029
            $0.exitStatus = 137
            $0.exitedAt = .with {
                $0.seconds = 1_795_313_757; $0.nanos = 852_653_514
            }
        }
        let bytes: [UInt8] = try response.serializedBytes()
        #expect(bytes.map { String(format: "%02x", $0) }.joined() == "08e5651089011a0c08dda089d80610caebc99603")
    }

    @Test func eventsCarryBareTypeURLs() throws {
        let any = try TaskMetrics.any(Containerd_Events_TaskExit.with { $0.containerID = "demo" })
        #expect(any.typeURL == "containerd.events.TaskExit")
        #expect(try TaskMetrics.any(Io_Containerd_Cgroups_V2_Metrics()).typeURL == "io.containerd.cgroups.v2.Metrics")
    }

    @Test func cgroupFilesBecomeV2Metrics() {
        let files = [
            "memory.current": "1048576\n", "memory.max": "max\n", "pids.current": "7\n", "pids.max": "256\n",
            "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 3\nnr_throttled 1\nthrottled_usec 20\n",
            "memory.stat": "anon 4096\nfile 8192\n", "memory.events": "oom 1\noom_kill 1\n", "cgroup.controllers": "cpu memory pids\n",
        ]
        let read: TaskMetrics.Reader = { files[$0] }
        #expect(TaskMetrics.isV2(read))
        let metrics = TaskMetrics.v2(read)
        #expect(metrics.memory.usage == 1_048_576 && metrics.memory.usageLimit == 0 && metrics.memory.anon == 4096)
        #expect(metrics.pids.current == 7 && metrics.pids.limit == 256)
        #expect(metrics.cpu.usageUsec == 1500 && metrics.cpu.nrThrottled == 1)
        #expect(metrics.memoryEvents.oomKill == 1)
    }
}
