#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import CLinux
import Cgroups
import Devices
import FoundationEssentials
import HostOS
import Logging
import Storage
import TTRPC
import VMM

/// The agent's vsock connection as the ttrpc client's byte stream. A wrapper rather than a
/// conformance on VsockStream, which a test target already declares for itself.
final class AgentChannel: ByteStream {
    let stream: VsockStream
    init(_ stream: VsockStream) { self.stream = stream }
    func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int { try stream.read(into: buffer) }
    func write(_ bytes: UnsafeRawBufferPointer) throws { try stream.write(bytes) }
    func close() { stream.close() }
}

/// Which of the process's outputs a chunk came from.
public enum SandboxOutput: Sendable {
    case stdout
    case stderr
}

/// One sandbox's lifecycle: cgroup, writable layer, image disk, guest initramfs, microVM, agent
/// session, container, process, teardown. Everything taken is released on every path out.
public struct Sandbox: Sendable {
    public static let agentPort: UInt32 = 1024
    static let guestCID: UInt32 = 3

    public let stateRoot: String
    public let agentPath: String
    let logger: Logger

    public init(stateRoot: String, agentPath: String, logger: Logger = Logger(label: "rund.sandbox")) {
        self.stateRoot = stateRoot
        self.agentPath = agentPath
        self.logger = logger
    }

    /// Runs `spec`'s process to its end, handing its output to `output` as it arrives.
    /// Returns its exit status (128+N when signal N ended it). `signals` reach the process.
    /// `phases`, if given, gets the phase boundaries (`rund bench run`).
    public func run(spec: SandboxSpec, signals: SandboxSignals = SandboxSignals(),
                    phases: SandboxPhaseRecorder? = nil,
                    output: @escaping @Sendable (SandboxOutput, [UInt8]) -> Void) async throws -> Int32 {
        defer { phases?.finish() }  // First declared, so it runs after every release below.
        phases?.begin(.prepare)
        let id = try SandboxID.validate(spec.id)
        let image = try ImageStore(root: stateRoot, logger: logger).lookup(reference: spec.image)
        let process = try spec.process(config: image.config)
        let kernelDirectory = stateRoot + "/kernel/current"
        let initramfs = try GuestInitramfs.path(stateRoot: stateRoot, kernelDirectory: kernelDirectory, agentPath: agentPath)

        phases?.begin(.cgroup)
        let cgroup = try SandboxCgroup(sandboxID: id, memoryMiB: spec.memoryMiB, logger: logger)
        defer { cgroup.release() }
        phases?.begin(.writableLayer)
        let writable = try WritableLayers(root: stateRoot, logger: logger).make(sizeMiB: spec.writableSizeMiB)
        defer { writable.close() }

        var configuration = VMConfiguration(
            kernelPath: kernelDirectory + "/vmlinuz", initrdPath: initramfs, extraCommandLine: "quiet",
            memoryMiB: spec.memoryMiB, vcpuCount: spec.vcpuCount,
            console: spec.consolePath.map { .file($0) } ?? .none)
        configuration.vsockGuestCID = Self.guestCID
        // /dev/vda: the image (EROFS, read-only); /dev/vdb: the sandbox's own ext4 layer.
        configuration.disks = [.init(path: image.erofsPath, readOnly: true),
                               .init(path: "/proc/self/fd/\(writable.rawValue)", readOnly: false)]
        phases?.begin(.vmCreate)
        let machine = try Machine(configuration: configuration, logger: logger)
        phases?.begin(.kernelBoot)
        // The VMM serves many sandboxes in one process, so the process itself cannot join one
        // sandbox's cgroup: this machine's thread joins it, and the vCPU threads it starts inherit it.
        let runner = try OSThread.spawn(name: "vm-\(id)") { [logger] in
            cgroup.attachCurrentThread(logger: logger)
            _ = try? machine.run()
        }
        defer {
            machine.stop(signal: SIGTERM)
            runner.join()
        }
        guard let vsock = machine.vsock else { throw SandboxError("the VM has no vsock device") }
        let stream = try await Self.connectAgent(vsock, machine: machine, within: .seconds(120))
        phases?.begin(.processStart)
        let client = AgentClient(connection: try TTRPCClient(stream: AgentChannel(stream)))
        let status = try await Self.runContainer(client, id: id, process: process, signals: signals, phases: phases, output: output)
        phases?.begin(.teardown)
        phases?.bootMarker(elapsedSinceVMCreate: machine.bootMarkerNanoseconds)  // Written by now.
        _ = try? await client.shutdown(timeout: .seconds(10))
        for _ in 0..<100 where machine.exitReason == nil { try? await Task.sleep(for: .milliseconds(50)) }
        return status
    }

    /// CreateContainer over the two disks, StartProcess, stream both outputs, Wait.
    static func runContainer(_ client: AgentClient, id: String,
                             process: (args: [String], env: [String], cwd: String, uid: UInt32, gid: UInt32),
                             signals: SandboxSignals, phases: SandboxPhaseRecorder? = nil,
                             output: @escaping @Sendable (SandboxOutput, [UInt8]) -> Void) async throws -> Int32 {
        _ = try await client.createContainer(.with {
            $0.containerID = id
            $0.hostname = String(id.prefix(63))
            $0.rootfs = .with {
                $0.image = .with { $0.path = "/dev/vda"; $0.fsType = "erofs" }
                $0.writable = .with { $0.path = "/dev/vdb"; $0.fsType = "ext4" }
                $0.upperDir = "upper"
                $0.workDir = "work"
            }
        })
        _ = try await client.startProcess(.with {
            $0.containerID = id
            $0.process = .with {
                $0.args = process.args
                $0.env = process.env
                $0.cwd = process.cwd
                $0.user = .with { $0.uid = process.uid; $0.gid = process.gid }
            }
        })
        phases?.begin(.exit)
        signals.started(client: client, containerID: id)
        let ref = AgentProcessRef.with { $0.containerID = id }
        async let out: Void = stream(client, ref, .stdout, output)
        async let err: Void = stream(client, ref, .stderr, output)
        _ = try await (out, err)
        let exit = try await client.waitProcess(.with { $0.process = ref })
        return exit.signal != 0 ? 128 + exit.signal : exit.exitCode
    }

    static func stream(_ client: AgentClient, _ ref: AgentProcessRef, _ which: SandboxOutput,
                       _ output: @Sendable (SandboxOutput, [UInt8]) -> Void) async throws {
        while true {
            let request = AgentReadOutputRequest.with { $0.process = ref }
            let chunk = which == .stdout ? try await client.readStdout(request) : try await client.readStderr(request)
            if !chunk.data.isEmpty { output(which, [UInt8](chunk.data)) }
            if chunk.eof { return }
        }
    }

    /// Connects to the agent, retrying while the guest boots; a VM that ends first or an agent
    /// that never answers is a one-line error.
    static func connectAgent(_ vsock: VsockHostEndpoint, machine: Machine, within limit: Duration) async throws -> VsockStream {
        do {
            return try await vsock.connect(guestPort: agentPort, retryingFor: limit) { machine.exitReason != nil }
        } catch let error as VsockError {
            if let ended = machine.exitReason {
                throw SandboxError("the VM ended before its agent answered: \(ended)")
            }
            throw SandboxError("the guest agent did not answer within \(limit) (\(error)); pass --console FILE to see the guest's console")
        }
    }
}
