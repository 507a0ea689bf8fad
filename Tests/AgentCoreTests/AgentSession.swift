import AgentProtocol
import FoundationEssentials
import TTRPC

/// Host-side helpers for driving a real agent through `AgentClient`: shared by the in-process
/// tests (agent on this host) and the inside-L1 test (agent as PID 1 of a microVM).
struct AgentSession {
    let client: AgentClient

    static func ref(_ container: String, _ exec: String = "") -> AgentProcessRef {
        .with {
            $0.containerID = container; $0.execID = exec
        }
    }

    static func spec(_ args: [String], env: [String] = ["PATH=/usr/sbin:/usr/bin:/sbin:/bin"], openStdin: Bool = false) -> AgentProcessSpec
    {
        .with {
            $0.args = args
            $0.env = env
            $0.openStdin = openStdin
        }
    }

    /// Reads a stream to its end.
    func drain(_ process: AgentProcessRef, stderr: Bool = false) async throws -> String {
        var output: [UInt8] = []
        while true {
            let request = AgentReadOutputRequest.with { $0.process = process }
            let chunk = stderr ? try await client.readStderr(request) : try await client.readStdout(request)
            output += chunk.data
            if chunk.eof { return String(decoding: output, as: UTF8.self) }
        }
    }

    struct Finished: Equatable {
        var stdout: String
        var stderr: String
        var exitCode: Int32
        var signal: Int32
    }

    /// Starts `args` as the main process of `container`, collects both outputs and the exit.
    func run(_ args: [String], container: String) async throws -> Finished {
        _ = try await client.startProcess(
            .with {
                $0.containerID = container
                $0.process = Self.spec(args)
            })
        let ref = Self.ref(container)
        async let out = drain(ref)
        async let err = drain(ref, stderr: true)
        let (stdout, stderr) = try await (out, err)
        let exit = try await client.waitProcess(.with { $0.process = ref })
        return Finished(stdout: stdout, stderr: stderr, exitCode: exit.exitCode, signal: exit.signal)
    }
}
