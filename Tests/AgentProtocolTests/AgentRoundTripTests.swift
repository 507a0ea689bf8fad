import Foundation
import AgentProtocol
import Testing
import TTRPC

/// AgentClient → ttrpc over a socketpair → TTRPCServer → a real AgentService implementation,
/// through every RPC of the agent API.
@Suite struct AgentRoundTripTests {
    private func connectedAgent() throws -> (AgentClient, MemoryAgent, TTRPCServerConnection) {
        let agent = MemoryAgent()
        let server = TTRPCServer()
        server.register(agent: agent)
        let (host, guest) = try SocketStream.pair()
        let connection = try server.serve(guest)
        return (AgentClient(connection: try TTRPCClient(stream: host)), agent, connection)
    }

    private static let layout = AgentRootfsLayout.with {
        $0.image = .with {
            $0.path = "/dev/vda"; $0.fsType = "erofs"
        }
        $0.writable = .with {
            $0.path = "/dev/vdb"; $0.fsType = "ext4"; $0.options = ["noatime"]
        }
        $0.upperDir = "upper"
        $0.workDir = "work"
    }

    private func ref(_ container: String, _ exec: String = "") -> AgentProcessRef {
        .with {
            $0.containerID = container; $0.execID = exec
        }
    }

    private func drain(_ client: AgentClient, _ process: AgentProcessRef, stderr: Bool = false) async throws -> [UInt8] {
        var output: [UInt8] = []
        while true {
            let request = AgentReadOutputRequest.with {
                $0.process = process; $0.maxBytes = 4
            }
            let chunk = stderr ? try await client.readStderr(request) : try await client.readStdout(request)
            if chunk.eof { return output }
            #expect(!chunk.data.isEmpty && chunk.data.count <= 4)
            output += chunk.data
        }
    }

    @Test func everyRPCRoundTrips() async throws {
        let (client, agent, connection) = try connectedAgent()
        defer { connection.close() }

        let created = try await client.createContainer(
            .with {
                $0.containerID = "c1"
                $0.rootfs = Self.layout
                $0.hostname = "fn"
            })
        #expect(created.rootfsPath == "/run/rund/c1/rootfs")
        let recorded = await agent.containers["c1"]
        #expect(recorded?.rootfs == Self.layout)
        #expect(recorded?.hostname == "fn")

        let main = try await client.startProcess(
            .with {
                $0.containerID = "c1"
                $0.process = .with {
                    $0.args = ["cat", "-"]
                    $0.env = ["PATH=/bin", "A=1"]
                    $0.cwd = "/work"
                    $0.user = .with {
                        $0.uid = 1000; $0.gid = 1000; $0.additionalGids = [10, 20]
                    }
                    $0.rlimits = [
                        .with {
                            $0.type = "RLIMIT_NOFILE"; $0.soft = 1024; $0.hard = 4096
                        }
                    ]
                    $0.openStdin = true
                }
            })
        #expect(main.pid > 0)

        // A long-polling read is outstanding while stdin is written on the same connection.
        let firstRead = Task { try await client.readStdout(.with { $0.process = ref("c1") }) }
        try await Task.sleep(for: .milliseconds(50))
        let written = try await client.writeStdin(
            .with {
                $0.process = ref("c1"); $0.data = .init("hello".utf8)
            })
        #expect(written.written == 5)
        #expect(Array(try await firstRead.value.data) == Array("hello".utf8))

        _ = try await client.writeStdin(
            .with {
                $0.process = ref("c1"); $0.data = .init(" world, in chunks".utf8)
            })
        let waited = Task { try await client.waitProcess(.with { $0.process = ref("c1") }) }
        _ = try await client.closeStdin(.with { $0.process = ref("c1") })
        #expect(String(decoding: try await drain(client, ref("c1")), as: UTF8.self) == " world, in chunks")
        #expect(String(decoding: try await drain(client, ref("c1"), stderr: true), as: UTF8.self) == "cat -")
        let exit = try await waited.value
        #expect(exit.exitCode == 2 && exit.signal == 0 && !exit.oomKilled)

        let exec = try await client.execProcess(
            .with {
                $0.containerID = "c1"
                $0.execID = "e1"
                $0.process = .with {
                    $0.args = ["sh"]
                    $0.terminal = .with {
                        $0.size = .with {
                            $0.rows = 24; $0.columns = 80
                        }
                    }
                    $0.openStdin = true
                }
            })
        #expect(exec.pid > main.pid)
        _ = try await client.resizeTerminal(
            .with {
                $0.process = ref("c1", "e1")
                $0.size = .with {
                    $0.rows = 50; $0.columns = 132; $0.widthPixels = 1320; $0.heightPixels = 1000
                }
            })
        let size = try await agent.windowSize(ref("c1", "e1"))
        #expect(size?.rows == 50 && size?.columns == 132 && size?.widthPixels == 1320)

        let stats = try await client.stats(.with { $0.containerID = "c1" })
        #expect(stats.pids.current == 1)
        #expect(stats.memory.usageBytes == 1 << 20)

        await agent.setCachedBytes(3 << 20)
        let dropped = try await client.dropCaches()
        #expect(dropped.cachedBytesBefore == 3 << 20 && dropped.cachedBytesAfter == 0)

        _ = try await client.signalProcess(
            .with {
                $0.process = ref("c1", "e1"); $0.signal = 15
            })
        let killed = try await client.waitProcess(.with { $0.process = ref("c1", "e1") })
        #expect(killed.signal == 15 && killed.exitCode == 0)

        _ = try await client.shutdown()
        #expect(await agent.isShutDown)
    }

    @Test func agentErrorsReachTheHostAsStatuses() async throws {
        let (client, _, connection) = try connectedAgent()
        defer { connection.close() }
        await #expect(throws: TTRPCStatus(.notFound, "container nope not found")) {
            _ = try await client.startProcess(
                .with {
                    $0.containerID = "nope"; $0.process.args = ["true"]
                })
        }
        _ = try await client.createContainer(
            .with {
                $0.containerID = "c"; $0.rootfs = Self.layout
            })
        await #expect(throws: TTRPCStatus(.alreadyExists, "container c exists")) {
            _ = try await client.createContainer(
                .with {
                    $0.containerID = "c"; $0.rootfs = Self.layout
                })
        }
        do {
            _ = try await client.resizeTerminal(.with { $0.process = ref("c", "missing") })
            Issue.record("resizing a missing process succeeded")
        } catch let status as TTRPCStatus {
            #expect(status.code == .notFound)
        }
    }

    @Test func methodNamesMatchTheProto() throws {
        #expect(AgentMethod.service == "rund.agent.v1.Agent")
        let proto = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("protos/agent.proto")
        let text = try String(contentsOf: proto, encoding: .utf8)
        let rpcs = text.split(separator: "\n").compactMap { line -> String? in
            let words = line.split(separator: " ")
            guard words.first == "rpc", words.count > 1 else { return nil }
            return String(words[1].prefix(while: { $0 != "(" }))
        }
        #expect(Set(AgentMethod.allCases.map(\.rawValue)) == Set(rpcs))
        #expect(rpcs.count == AgentMethod.allCases.count)
    }
}
