#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import AgentProtocol
import FoundationEssentials
import Synchronization
import Testing
import TTRPC

/// The real agent service, on this host, over ttrpc on a socketpair, running real processes
/// (busybox-free: the host's sh, cat, sleep). Only PID 1 duties (mounts, reaping orphans,
/// power-off) are left to the inside-L1 test.
@Suite struct GuestAgentTests {
    final class PowerOffRecorder: Sendable {
        let calls = Mutex(0)
    }

    /// CreateContainer of a container `id` on /dev/vda + /dev/vdb, with `customize` applied;
    /// the status it was refused with (nil if it was not).
    private func refusal(
        of session: AgentSession, id: String, _ customize: (inout AgentCreateContainerRequest) -> Void
    ) async -> TTRPCStatus? {
        var request = AgentCreateContainerRequest.with {
            $0.containerID = id
            $0.rootfs = .with {
                $0.image = .with {
                    $0.path = "/dev/vda"; $0.fsType = "erofs"
                }
                $0.writable = .with {
                    $0.path = "/dev/vdb"; $0.fsType = "ext4"
                }
                $0.upperDir = "upper"; $0.workDir = "work"
            }
        }
        customize(&request)
        do {
            _ = try await session.client.createContainer(request)
            return nil
        } catch {
            return error as? TTRPCStatus
        }
    }

    private func connectedAgent() throws -> (AgentSession, PowerOffRecorder, TTRPCServerConnection) {
        let recorder = PowerOffRecorder()
        let server = TTRPCServer()
        server.register(
            agent: GuestAgent(table: ProcessTable(reaping: .perProcess)) {
                recorder.calls.withLock { $0 += 1 }
            })
        let (host, guest) = try SocketStream.pair()
        let connection = try server.serve(guest)
        return (AgentSession(client: AgentClient(connection: try TTRPCClient(stream: host))), recorder, connection)
    }

    @Test func runsACommandAndReportsOutputsAndExitCode() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        let finished = try await session.run(["sh", "-c", "echo hi; echo err >&2; exit 3"], container: "c1")
        #expect(finished == .init(stdout: "hi\n", stderr: "err\n", exitCode: 3, signal: 0))
    }

    @Test func feedsStdinAndHonoursCwdAndEnvironment() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        let client = session.client
        _ = try await client.startProcess(
            .with {
                $0.containerID = "c2"
                $0.process = .with {
                    $0.args = ["sh", "-c", "pwd; echo \"$GREETING\"; cat"]
                    $0.env = ["PATH=/usr/bin:/bin", "GREETING=hello there"]
                    $0.cwd = "/tmp"
                    $0.openStdin = true
                }
            })
        let ref = AgentSession.ref("c2")
        let written = try await client.writeStdin(
            .with {
                $0.process = ref; $0.data = Data("from stdin\n".utf8)
            })
        #expect(written.written == 11)
        _ = try await client.closeStdin(.with { $0.process = ref })
        #expect(try await session.drain(ref) == "/tmp\nhello there\nfrom stdin\n")
        #expect(try await client.waitProcess(.with { $0.process = ref }).exitCode == 0)
    }

    @Test(.enabled(if: getuid() == 0, "setuid/setgid/setgroups need root"))
    func runsAsTheRequestedUserWithRlimits() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        var spec = AgentSession.spec(["sh", "-c", "id -u; id -g; id -G; ulimit -n"])
        spec.user = .with {
            $0.uid = 1234; $0.gid = 2345; $0.additionalGids = [3456]
        }
        spec.rlimits = [
            .with {
                $0.type = "RLIMIT_NOFILE"; $0.soft = 77; $0.hard = 88
            }
        ]
        _ = try await session.client.startProcess(
            .with {
                $0.containerID = "c6"; $0.process = spec
            })
        let ref = AgentSession.ref("c6")
        #expect(try await session.drain(ref) == "1234\n2345\n2345 3456\n77\n")
        #expect(try await session.client.waitProcess(.with { $0.process = ref }).exitCode == 0)
    }

    /// A terminal process: one stream (stdout) carries everything, the size is the requested
    /// one and follows ResizeTerminal.
    @Test func runsOnAResizableTerminal() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        let client = session.client
        var spec = AgentSession.spec(["sh", "-c", "tty; stty size; echo err >&2; read line; stty size"], openStdin: true)
        spec.terminal = .with {
            $0.size = .with {
                $0.rows = 30; $0.columns = 100
            }
        }
        _ = try await client.startProcess(
            .with {
                $0.containerID = "c7"; $0.process = spec
            })
        let ref = AgentSession.ref("c7")
        var output = ""
        while !output.contains("err") {
            output += String(decoding: try await client.readStdout(.with { $0.process = ref }).data, as: UTF8.self)
        }
        _ = try await client.resizeTerminal(
            .with {
                $0.process = ref;
                $0.size = .with {
                    $0.rows = 40; $0.columns = 120
                }
            })
        _ = try await client.writeStdin(
            .with {
                $0.process = ref; $0.data = Data("\n".utf8)
            })
        output += try await session.drain(ref)
        #expect(output.hasPrefix("/dev/pts/"))
        #expect(output.contains("30 100\r\n"))
        #expect(output.contains("err\r\n"))
        #expect(output.contains("40 120\r\n"))
        #expect(try await session.drain(ref, stderr: true) == "")
        #expect(try await client.waitProcess(.with { $0.process = ref }).exitCode == 0)
    }

    @Test func execsBesideTheMainProcessAndSignals() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        let client = session.client
        _ = try await client.startProcess(
            .with {
                $0.containerID = "c3"; $0.process = AgentSession.spec(["sleep", "30"])
            })
        let exec = try await client.execProcess(
            .with {
                $0.containerID = "c3"
                $0.execID = "e1"
                $0.process = AgentSession.spec(["sh", "-c", "echo $$"])
            })
        #expect(try await session.drain(AgentSession.ref("c3", "e1")) == "\(exec.pid)\n")
        _ = try await client.signalProcess(
            .with {
                $0.process = AgentSession.ref("c3"); $0.signal = SIGTERM
            })
        let waited = try await client.waitProcess(.with { $0.process = AgentSession.ref("c3") })
        #expect(waited.signal == SIGTERM && waited.exitCode == 0)
    }

    /// A read that times out (the long-poll's deadline) gives up its place without taking any
    /// bytes: the next read still gets everything, in order. (The client's deadline fires a
    /// moment before the agent's; data arriving in between would go to the abandoned call, so
    /// the test waits until the agent has ended that call.)
    @Test func timedOutReadsLoseNoOutput() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        let client = session.client
        _ = try await client.startProcess(
            .with {
                $0.containerID = "c5"
                $0.process = AgentSession.spec(["sh", "-c", "read line; echo \"got $line\"; exit 7"], openStdin: true)
            })
        let ref = AgentSession.ref("c5")
        await #expect(throws: TTRPCStatus.self) {
            _ = try await client.readStdout(.with { $0.process = ref }, timeout: .milliseconds(100))
        }
        for _ in 0..<1500 where connection.handlersRunning > 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(connection.handlersRunning == 0, "the agent still reads for the abandoned call")
        _ = try await client.writeStdin(
            .with {
                $0.process = ref; $0.data = Data("x\n".utf8)
            })
        #expect(try await session.drain(ref) == "got x\n")
        #expect(try await session.drain(ref, stderr: true) == "")
        #expect(try await client.waitProcess(.with { $0.process = ref }).exitCode == 7)
        // Exited, waited for and read to the end: the agent forgets it.
        let status = await { () async -> TTRPCStatus? in
            do { _ = try await client.waitProcess(.with { $0.process = ref }); return nil } catch { return error as? TTRPCStatus }
        }()
        #expect(status?.code == .notFound)
    }

    @Test func badRequestsGetClearStatusesAndStartNothing() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        let client = session.client
        func status(_ body: () async throws -> Void) async -> TTRPCStatus? {
            do {
                try await body()
                return nil
            } catch {
                return error as? TTRPCStatus
            }
        }
        #expect(
            await status {
                _ = try await client.startProcess(
                    .with {
                        $0.containerID = "c4"; $0.process = AgentSession.spec(["no-such-program-x"])
                    })
            }?.code == .notFound)
        #expect(
            await status {
                _ = try await client.startProcess(
                    .with {
                        $0.containerID = "bad/id"; $0.process = AgentSession.spec(["true"])
                    })
            }?.code == .invalidArgument)
        #expect(await status { _ = try await client.waitProcess(.with { $0.process = AgentSession.ref("c4") }) }?.code == .notFound)
        #expect(await status { _ = try await client.createContainer(.with { $0.containerID = "c4" }) }?.code == .invalidArgument)
        var badCwd = AgentSession.spec(["true"])
        badCwd.cwd = "/no/such/dir"
        let failed = await status {
            _ = try await client.startProcess(
                .with {
                    $0.containerID = "c4"; $0.process = badCwd
                })
        }
        #expect(failed?.code == .failedPrecondition)
        #expect(failed?.message.contains("chdir") == true)
        _ = try await client.startProcess(
            .with {
                $0.containerID = "c4"; $0.process = AgentSession.spec(["true"])
            })
        #expect(
            await status {
                _ = try await client.startProcess(
                    .with {
                        $0.containerID = "c4"; $0.process = AgentSession.spec(["true"])
                    })
            }?.code == .alreadyExists)
        #expect(
            await status {
                _ = try await client.writeStdin(
                    .with {
                        $0.process = AgentSession.ref("c4"); $0.data = Data("x".utf8)
                    })
            }?.code == .failedPrecondition)
    }

    /// A guest identity the agent refuses (entropy of the wrong size, a negative time) fails
    /// CreateContainer before anything is applied or mounted. (Applying a valid one would step
    /// this host's clock: that is for the inside-L1 and rig tests.)
    @Test func aBadGuestIdentityIsRefusedBeforeAnythingChanges() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        func create(_ identity: AgentGuestIdentity) async -> TTRPCStatus? {
            await refusal(of: session, id: "identity") { $0.identity = identity }
        }
        let short = await create(.with { $0.entropy = Data(repeating: 7, count: 5) })
        #expect(short?.code == .invalidArgument)
        #expect(short?.message.contains("entropy must be 32 to 512 bytes, not 5") == true)
        let long = await create(.with { $0.entropy = Data(repeating: 7, count: 513) })
        #expect(long?.code == .invalidArgument)
        let past = await create(.with { $0.hostRealtimeNs = -1 })
        #expect(past?.code == .invalidArgument)
        #expect(past?.message.contains("must not be negative") == true)
    }

    /// A network the agent refuses fails CreateContainer with the field named, before the
    /// guest's network or any mount is touched (applying one is GuestNetworkTests', in a
    /// namespace of its own).
    @Test func aBadNetworkIsRefusedNamingTheField() async throws {
        let (session, _, connection) = try connectedAgent()
        defer { connection.close() }
        func create(hostname: String = "web", _ network: AgentGuestNetwork) async -> TTRPCStatus? {
            await refusal(of: session, id: "networked") {
                $0.hostname = hostname
                $0.network = network
            }
        }
        let valid = AgentGuestNetwork.with {
            $0.mac = Data([2, 0, 0, 0, 0, 1]); $0.mtu = 1500
        }
        var badMTU = valid
        badMTU.mtu = 10
        let mtu = await create(badMTU)
        #expect(mtu?.code == .invalidArgument)
        #expect(mtu?.message == "network.mtu 10 must be 68 to 65535")
        let hostname = await create(hostname: "web\n6.6.6.6 evil", valid)
        #expect(hostname?.code == .invalidArgument)
        #expect(hostname?.message == #"hostname "web\x0a6.6.6.6 evil" must be [A-Za-z0-9_.-] to go in /etc/hosts"#)
    }

    @Test func statsComeFromProcAndShutdownPowersOff() async throws {
        let (session, recorder, connection) = try connectedAgent()
        defer { connection.close() }
        let stats = try await session.client.stats(.with { $0.containerID = "any" })
        #expect(stats.cpu.usageNanos > 0)
        #expect(stats.memory.limitBytes > stats.memory.usageBytes && stats.memory.usageBytes > 0)
        #expect(stats.pids.current > 1)
        _ = try await session.client.shutdown()
        for _ in 0..<1500 where recorder.calls.withLock({ $0 }) == 0 { try await Task.sleep(for: .milliseconds(20)) }
        #expect(recorder.calls.withLock { $0 } == 1)
    }
}
