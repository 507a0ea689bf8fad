#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import AgentEarlyInit
import AgentProtocol
import HostOS
import Logging
import TTRPC

// rund-agent: the guest's PID 1. Everything up to the mounts runs before any Swift concurrency
// or extra thread exists (the runtime reads /proc to start its threads; /proc itself is mounted
// even earlier, by AgentEarlyInit).
let isInit = getpid() == 1
if isInit {
    // /proc is already mounted by AgentEarlyInit's constructor (the runtime needed it).
    var mountFailures = GuestMounts.mountAll()
    GuestMounts.attachConsole()
    let procError = rund_agent_early_proc_mount_error()
    if procError != 0 { mountFailures.insert("mount proc on /proc: \(String(cString: strerror(procError)))", at: 0) }
    if !mountFailures.isEmpty { GuestPower.fail(mountFailures.joined(separator: "; ")) }
}
// Every thread inherits this mask: the reaper sigwaits for SIGCHLD, and a write to a closed
// stdin pipe must fail with EPIPE rather than kill PID 1.
ChildReaper.blockChildSignal()
signal(SIGPIPE, SIG_IGN)

LoggingSystem.bootstrap { label in
    var handler = StreamLogHandler.standardError(label: label)
    handler.logLevel = .info
    return handler
}
let logger = Logger(label: "rund.agent")

if isInit {
    for failure in ModuleLoader.load() {
        logger.warning("module not loaded", metadata: ["error": "\(failure)"])
    }
    if let failure = FreePageReporting.configure() {
        logger.warning("free page reporting left at the kernel's order", metadata: ["error": "\(failure)"])
    }
}

let agentPort: UInt32 = 1024
let table = ProcessTable(reaping: isInit ? .byReaper : .perProcess)
do {
    if isInit { try ChildReaper.start(reportingTo: table) }
    let server = TTRPCServer(logger: logger)
    server.register(
        agent: GuestAgent(
            table: table, logger: logger,
            powerOff: {
                if isInit { GuestPower.powerOff() } else { exit(0) }
            }))
    let listener = try VsockSocket.listen(port: agentPort)
    try server.serve(listener: listener)
    // The marker before the log line: writing a line to the serial console takes long enough
    // under emulation that the host's connect would be answered first.
    if isInit {
        do {
            try BootMarker.signalReady()
        } catch {
            logger.warning("boot marker not written", metadata: ["error": "\(error)"])
        }
    }
    logger.info("rund-agent listening", metadata: ["vsock-port": "\(agentPort)"])
} catch {
    if isInit { GuestPower.fail("cannot serve the agent on vsock port \(agentPort): \(error)") }
    logger.critical("cannot serve the agent on vsock port \(agentPort): \(error)")
    exit(1)
}

// The accept loop and handlers run on their own threads; PID 1 itself just never returns.
while true { pause() }
