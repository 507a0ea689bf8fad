#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import HostOS
import Logging
import Synchronization
import TTRPC

/// The long-running shim: serves the Task service on the socket `start` made (fd 3), logs to
/// the bundle's `log` FIFO, publishes events to containerd, and exits after a Shutdown that
/// leaves no task (or when nothing has used it for a while: containerd went away).
enum ShimDaemon {
    /// With no task and no connection for this long, the shim leaves by itself.
    static let idleLimit: Duration = .seconds(60)

    static func run(_ arguments: ShimArguments) async -> Int32 {
        let bundle = ShimMain.currentDirectory()
        let log = try? FileDescriptor.open(bundle + "/log", O_WRONLY | O_NONBLOCK)
        let output = ShimLogOutput(log)
        let level: Logger.Level = arguments.debug ? .debug : .info
        LoggingSystem.bootstrap { label in
            ShimLogHandler(output: output, level: level, metadata: ["runtime": "io.containerd.rund.v2", "id": .string(arguments.id)])
        }
        let logger = Logger(label: "rund.shim")

        let listener: FileDescriptor
        do {
            listener = arguments.socket.isEmpty ? FileDescriptor(adopting: 3) : try UnixSocket.listen(path: arguments.socket)
        } catch {
            logger.error("cannot listen: \(error)")
            return 1
        }
        let ttrpcAddress = ProcessInfo.processInfo.environment["TTRPC_ADDRESS"].flatMap { $0.isEmpty ? nil : $0 }
        let publisher = EventPublisher(address: ttrpcAddress, namespace: arguments.namespace, logger: logger)
        let socketPath = socketPath(arguments, bundle: bundle)
        let exit = ExitOnce(publisher: publisher, socketPath: socketPath, logger: logger)
        let service = TaskService(namespace: arguments.namespace, publisher: publisher, logger: logger) {
            exit.leave(status: 0, after: .milliseconds(100))
        }
        let server = TTRPCServer(logger: logger)
        service.register(on: server)
        do {
            try SignalForwarder.forward([SIGTERM, SIGINT]) { _ in
                service.stopAll()
                exit.leave(status: 0)
            }
            try server.serve(listener: listener)
        } catch {
            logger.error("cannot serve: \(error)")
            return 1
        }
        logger.info("serving", metadata: ["pid": "\(getpid())", "events": "\(ttrpcAddress ?? "none")"])

        var idleSince = ContinuousClock.now
        while true {
            try? await Task.sleep(for: .seconds(5))
            if service.isBusy || server.connectionCount > 0 {
                idleSince = .now
            } else if ContinuousClock.now - idleSince >= idleLimit, service.leaveIfIdle() {
                logger.info("no task and no connection for \(idleLimit): leaving")
                exit.leave(status: 0)
            }
        }
    }

    /// The socket this shim serves, worked out as `start` did (removed when the shim leaves).
    static func socketPath(_ arguments: ShimArguments, bundle: String) -> String? {
        if !arguments.socket.isEmpty { return arguments.socket }
        guard let annotations = try? BundleSpec.load(bundle: bundle).annotations else { return nil }
        return ShimNames.socketPath(
            containerdAddress: arguments.address, namespace: arguments.namespace,
            group: ShimNames.group(id: arguments.id, annotations: annotations))
    }
}

/// Leaves the process once: events flushed (briefly), the socket removed, then exit.
final class ExitOnce: Sendable {
    private let started = Mutex(false)
    private let publisher: EventPublisher
    private let socketPath: String?
    private let logger: Logger

    init(publisher: EventPublisher, socketPath: String?, logger: Logger) {
        self.publisher = publisher
        self.socketPath = socketPath
        self.logger = logger
    }

    func leave(status: Int32, after delay: Duration = .zero) {
        guard
            started.withLock({ started in
                defer { started = true }; return !started
            })
        else { return }
        Task {
            // The Shutdown reply goes out first.
            try? await Task.sleep(for: delay)
            await publisher.flush(within: .seconds(2))
            if let socketPath { try? FileSystem.unlink(at: nil, socketPath) }
            logger.info("shim exiting")
            exit(status)
        }
    }
}
