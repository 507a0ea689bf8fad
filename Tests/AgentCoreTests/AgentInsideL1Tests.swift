#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import Devices
import FoundationEssentials
import HostOS
import Synchronization
import Testing
import TTRPC
import VMM

extension VsockStream: ByteStream {}

/// Run by AgentInRigTests inside the nested rig's L1 (real KVM): boots the stock kernel with
/// rund-agent as /init and talks to it over virtio-vsock. Proves the guest's vsock driver
/// against our device, ttrpc over it, and the agent as PID 1.
@Suite(.enabled(if: AgentL1Environment.current != nil, AgentL1Environment.skipReason))
struct AgentInsideL1Tests {
    static let agentPort: UInt32 = 1024

    @Test func hostRunsACommandThroughTheAgentAndShutsTheGuestDown() async throws {
        let environment = try #require(AgentL1Environment.current)

        var configuration = VMConfiguration(
            kernelPath: environment.kernel, initrdPath: environment.initrd, extraCommandLine: "quiet",
            memoryMiB: 256, vcpuCount: 1, console: .standardOutput)
        configuration.vsockGuestCID = 3
        // /dev/vda: the container image (EROFS, read-only); /dev/vdb: its writable ext4.
        configuration.disks = [.init(path: environment.image, readOnly: true), .init(path: environment.writable, readOnly: false)]
        let machine = try Machine(configuration: configuration)
        let runner = try OSThread.spawn(name: "machine") { _ = try? machine.run() }
        defer {
            machine.stop(signal: SIGTERM)
            runner.join()
        }
        let vsock = try #require(machine.vsock)

        let started = ContinuousClock.now
        let stream = try await vsock.connect(guestPort: Self.agentPort, retryingFor: .seconds(60)) { machine.exitReason != nil }
        print("agent-test: connected to the agent after \(ContinuousClock.now - started)")
        // The agent marks "ready" right after it starts listening, so a connection can win the race
        // against that write by a moment.
        var ready = machine.bootMarkerNanoseconds
        for _ in 0..<40 where ready == nil {
            try await Task.sleep(for: .milliseconds(50))
            ready = machine.bootMarkerNanoseconds
        }
        print("agent-test: agent ready (boot marker) \(ready.map { "\($0 / 1_000_000) ms" } ?? "never") after the machine was built")
        #expect(ready != nil)
        let session = AgentSession(client: AgentClient(connection: try TTRPCClient(stream: stream)))

        let finished = try await session.run(["sh", "-c", "echo hi; echo err >&2; exit 3"], container: "c1")
        print("agent-test: stdout=\(finished.stdout.debugDescription) stderr=\(finished.stderr.debugDescription) exit=\(finished.exitCode)")
        #expect(finished == .init(stdout: "hi\n", stderr: "err\n", exitCode: 3, signal: 0))

        // PID 1 mounted the base filesystems before serving.
        let mounts = try await session.run(["/bin/busybox", "cat", "/proc/mounts"], container: "c2")
        #expect(mounts.stdout.contains("devtmpfs /dev devtmpfs"))
        #expect(mounts.stdout.contains("tmpfs /run tmpfs"))
        // PID 1 reaps orphans: the background sleep outlives its shell (holding stdout open until
        // it ends) and must not stay a zombie once reparented to the agent.
        let orphaned = try await session.run(["sh", "-c", "/bin/busybox sleep 1 & echo $!"], container: "c3")
        try await Task.sleep(for: .milliseconds(500))
        let states = try await session.run(["/bin/busybox", "sh", "-c", "/bin/busybox cat /proc/[0-9]*/stat"], container: "c4")
        let zombies = states.stdout.split(separator: "\n").filter { $0.contains(") Z ") }
        print("agent-test: orphan pid \(orphaned.stdout.split(separator: "\n").first ?? "?"), zombies left: \(zombies.count)")
        #expect(zombies.isEmpty, "zombies: \(zombies)")

        try await Self.runContainer(session)

        let stats = try await session.client.stats(.with { $0.containerID = "c1" })
        print(
            "agent-test: guest memory used \(stats.memory.usageBytes >> 20) of \(stats.memory.limitBytes >> 20) MiB, \(stats.pids.current) pids"
        )
        #expect(stats.memory.limitBytes > 0 && stats.pids.current > 0)

        _ = try await session.client.shutdown()
        for _ in 0..<300 where machine.exitReason == nil { try await Task.sleep(for: .milliseconds(100)) }
        let result = machine.exitReason
        print("agent-test: machine exit: \(result.map { "\($0)" } ?? "still running")")
        #expect(result == .poweredOff)
    }

    /// CreateContainer, then a main process (PID 1 of its namespace, its own hostname, writing
    /// into the overlay) and an exec that joins it and reads what the main process wrote.
    static func runContainer(_ session: AgentSession) async throws {
        let client = session.client
        let created = try await client.createContainer(
            .with {
                $0.containerID = "ctr"
                $0.hostname = "fn-host"
                $0.rootfs = .with {
                    $0.image = .with {
                        $0.path = "/dev/vda"; $0.fsType = "erofs"
                    }
                    $0.writable = .with {
                        $0.path = "/dev/vdb"; $0.fsType = "ext4"
                    }
                    $0.upperDir = "upper"
                    $0.workDir = "work"
                }
            })
        print("agent-test: container rootfs at \(created.rootfsPath)")
        let main = AgentSession.ref("ctr")
        _ = try await client.startProcess(
            .with {
                $0.containerID = "ctr"
                $0.process = AgentSession.spec(
                    ["sh", "-c", "echo pid=$$ host=$(hostname); echo layered > /upper-file; echo ready; read line; echo bye"],
                    env: ["PATH=/bin"], openStdin: true)
            })
        var mainOutput = ""
        while !mainOutput.contains("ready\n") {
            let chunk = try await client.readStdout(.with { $0.process = main })
            mainOutput += String(decoding: chunk.data, as: UTF8.self)
            if chunk.eof { break }
        }
        print("agent-test: container main: \(mainOutput.split(separator: "\n").first ?? "")")
        #expect(mainOutput.hasPrefix("pid=1 host=fn-host\n"))

        _ = try await client.execProcess(
            .with {
                $0.containerID = "ctr"
                $0.execID = "e1"
                $0.process = AgentSession.spec(["sh", "-c", "echo exec-pid=$$; cat /upper-file; ls /"], env: ["PATH=/bin"])
            })
        let exec = AgentSession.ref("ctr", "e1")
        let execOutput = try await session.drain(exec)
        print("agent-test: container exec: \(execOutput.split(separator: "\n").joined(separator: " "))")
        #expect(execOutput.contains("layered\n"))
        #expect(execOutput.contains("busybox") == false && execOutput.contains("bin"))
        #expect(try await client.waitProcess(.with { $0.process = exec }).exitCode == 0)

        // A terminal inside the container (the guest's devpts, bound in with /dev).
        var onTerminal = AgentSession.spec(["tty"], env: ["PATH=/bin"])
        onTerminal.terminal = .with {
            $0.size = .with {
                $0.rows = 24; $0.columns = 80
            }
        }
        _ = try await client.execProcess(
            .with {
                $0.containerID = "ctr"; $0.execID = "e2"; $0.process = onTerminal
            })
        let terminalOutput = try await session.drain(AgentSession.ref("ctr", "e2"))
        print("agent-test: container terminal: \(terminalOutput.debugDescription)")
        #expect(terminalOutput.hasPrefix("/dev/pts/"))

        _ = try await client.writeStdin(
            .with {
                $0.process = main; $0.data = Data("go\n".utf8)
            })
        #expect(try await session.drain(main).contains("bye"))
        #expect(try await client.waitProcess(.with { $0.process = main }).exitCode == 0)
    }
}

/// Where the inside-L1 test finds its guest: AgentInRigTests passes the paths in the command.
enum AgentL1Environment {
    struct Paths {
        var kernel: String
        var initrd: String
        var image: String
        var writable: String
    }

    static let current: Paths? = {
        guard let kernel = getenv("RUND_AGENT_TEST_KERNEL"), let initrd = getenv("RUND_AGENT_TEST_INITRD"),
            let image = getenv("RUND_AGENT_TEST_IMAGE"), let writable = getenv("RUND_AGENT_TEST_WRITABLE"),
            FileSystem.exists("/dev/kvm"), !FileSystem.exists("/sys/module/kvm_pvm")
        else { return nil }
        return Paths(
            kernel: String(cString: kernel), initrd: String(cString: initrd),
            image: String(cString: image), writable: String(cString: writable))
    }()

    static let skipReason: Comment = """
        runs inside the nested rig only (AgentInRigTests sets RUND_AGENT_TEST_KERNEL/INITRD/IMAGE/WRITABLE): \
        needs a /dev/kvm that boots Linux, which this host's PVM does not
        """
}
