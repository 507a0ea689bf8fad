#if canImport(Glibc)
import Glibc
#endif
import Cgroups
import FoundationEssentials
import HostOS
import Logging
import SwiftProtobuf

/// The shim's entry point: `start`, `delete` or serve, as containerd runs it (docs/shim.md).
public enum ShimMain {
    /// Runs the action and returns the process's exit status (serve never returns).
    public static func run(_ arguments: [String]) async -> Int32 {
        SignalForwarder.ignore(SIGPIPE)  // A FIFO or socket peer that leaves must not kill the shim.
        let parsed: ShimArguments
        do {
            parsed = try ShimArguments.parse(arguments)
        } catch {
            writeLine(2, "containerd-shim-rund-v2: \(error)")
            return 1
        }
        if parsed.version {
            writeLine(1, "containerd-shim-rund-v2 (rund)")
            return 0
        }
        switch parsed.action {
        case .start:
            return ShimStart.run(parsed)
        case .delete:
            return ShimDelete.run(parsed)
        case .serve:
            return await ShimDaemon.run(parsed)
        }
    }

    static func writeLine(_ fd: Int32, _ text: String) {
        let bytes = Array((text + "\n").utf8)
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }

    static func currentDirectory() -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        guard getcwd(&buffer, buffer.count) != nil else { return "." }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    /// Writes `text` to `path` atomically (a temporary name, then rename).
    static func writeAtomically(_ path: String, _ text: String) throws {
        let temporary = path.lastIndex(of: "/").map { String(path[...$0]) + "." + String(path[path.index(after: $0)...]) } ?? "." + path
        var renamed = false
        defer { if !renamed { try? FileSystem.unlink(at: nil, temporary) } }
        let file = try FileDescriptor.open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { file.close() }
        try file.writeAll(text)
        try FileSystem.rename(at: nil, temporary, to: path)
        renamed = true
    }
}

/// `start`: finds or starts the shim that serves this container, writes `<bundle>/address`
/// and prints the address: nothing else goes to stdout or stderr (containerd reads both).
enum ShimStart {
    /// The serving process's identity, for `delete` after a crash.
    static let pidFile = "shim.pid"

    static func run(_ arguments: ShimArguments) -> Int32 {
        // The runtime options (a protobuf Any) come on stdin; Create carries them again.
        _ = try? FileDescriptor(adopting: dup(0)).readToEnd(limit: 1 << 20)
        let bundle = ShimMain.currentDirectory()
        var spawned: pid_t?
        var listening: String?
        do {
            guard !arguments.id.isEmpty, !arguments.namespace.isEmpty, !arguments.address.isEmpty else {
                throw ShimError(.invalidArgument, "start needs -id, -namespace and -address")
            }
            let annotations = try BundleSpec.load(bundle: bundle).annotations
            let path = ShimNames.socketPath(
                containerdAddress: arguments.address, namespace: arguments.namespace,
                group: ShimNames.group(id: arguments.id, annotations: annotations))
            let address = "unix://" + path
            if (try? UnixSocket.connect(path: path)) != nil {
                // A shim for this group already serves (a pod's later container): use it.
                try ShimMain.writeAtomically(bundle + "/address", address)
                ShimMain.writeLine(1, address)
                return 0
            }
            try FileSystem.makeDirectories(ShimNames.socketDirectory, mode: 0o711)
            try? FileSystem.unlink(at: nil, path)  // Stale: nothing answers on it.
            let listener = try UnixSocket.listen(path: path)
            listening = path
            _ = chmod(path, 0o600)
            // By its real path, so ps shows what it is (the file may be replaced later: the
            // running shim keeps its own).
            let pid = try SpawnedProcess.spawnDaemon(
                ShimConfiguration.executablePath(), arguments: arguments.serveArguments, passing: listener)
            spawned = pid
            listener.close()
            // Its identity (pid and start time), for delete after a crash: a pid alone could name
            // another process by then.
            var identity = ProcessIdentity.of(pid: pid)
            for _ in 0..<50 where identity == nil {
                usleep(10_000)
                identity = ProcessIdentity.of(pid: pid)
            }
            guard let identity else { throw ShimError("the shim process \(pid) ended as it started") }
            try ShimMain.writeAtomically(bundle + "/" + pidFile, "\(identity.pid) \(identity.startTime)")
            try ShimMain.writeAtomically(bundle + "/address", address)
            ShimMain.writeLine(1, address)
            return 0
        } catch {
            if let spawned { kill(spawned, SIGKILL) }
            if let listening { try? FileSystem.unlink(at: nil, listening) }
            ShimMain.writeLine(1, "rund shim start: \(error)")
            return 1
        }
    }
}

/// `delete`: cleans up after a task whose shim is gone or going (containerd runs it after
/// every task, and after a shim crash): stops the serving process if it still runs (it hosts
/// this container only), returns the sandbox's cgroup when its owner died, removes the socket.
/// Prints one DeleteResponse, and nothing else, on stdout; notes go to stderr.
enum ShimDelete {
    static func run(_ arguments: ShimArguments) -> Int32 {
        let bundle = arguments.bundle.isEmpty ? ShimMain.currentDirectory() : arguments.bundle
        var pid: UInt32 = 0
        var notes: [String] = []
        if let identity = readIdentity(bundle + "/" + ShimStart.pidFile) {
            pid = UInt32(clamping: identity.pid)
            if !stop(identity) { notes.append("the shim (pid \(identity.pid)) did not end") }
        }
        let sandboxID = ShimNames.sandboxID(namespace: arguments.namespace, id: arguments.id)
        do {
            let host = try CgroupHost.detect()
            if host.writable {
                let report = try CgroupGarbageCollector.collect(host: host, sandboxID: sandboxID)
                notes += report.failures
            }
        } catch {
            notes.append("cgroups: \(error)")
        }
        if let address = try? FileDescriptor.open(bundle + "/address", O_RDONLY).readToEnd(limit: 4096) {
            let path = String(decoding: address, as: UTF8.self).trimmingSpaces.replacing("unix://", with: "")
            if path.hasPrefix(ShimNames.socketDirectory + "/"), (try? UnixSocket.connect(path: path)) == nil {
                try? FileSystem.unlink(at: nil, path)
            }
        }
        for note in notes { ShimMain.writeLine(2, note) }
        let response = Containerd_Task_V2_DeleteResponse.with {
            $0.pid = pid
            $0.exitStatus = UInt32(128 + SIGKILL)
            $0.exitedAt = .now()
        }
        guard let bytes: [UInt8] = try? response.serializedBytes() else { return 1 }
        _ = bytes.withUnsafeBytes { write(1, $0.baseAddress, $0.count) }
        return 0
    }

    static func readIdentity(_ path: String) -> ProcessIdentity? {
        guard let bytes = try? FileDescriptor.open(path, O_RDONLY).readToEnd(limit: 256) else { return nil }
        let fields = String(decoding: bytes, as: UTF8.self).split(separator: " ")
        guard fields.count == 2, let pid = Int32(fields[0]), pid > 0, let start = UInt64(fields[1]) else { return nil }
        return ProcessIdentity(pid: pid, startTime: start)
    }

    /// Waits for the shim to end by itself (it does after Shutdown), then kills it. True when it
    /// is gone. Only the process with both the pid and the start time is the shim: one that only
    /// shares the pid is another process, and is left alone.
    static func stop(_ identity: ProcessIdentity) -> Bool {
        func alive() -> Bool {
            guard identity.startTime != 0, let now = ProcessIdentity.of(pid: identity.pid) else { return false }
            return now == identity
        }
        for _ in 0..<100 where alive() { usleep(10_000) }
        guard alive() else { return true }
        kill(identity.pid, SIGKILL)
        for _ in 0..<300 where alive() { usleep(10_000) }
        return !alive()
    }
}
