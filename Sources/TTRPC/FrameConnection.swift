#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Synchronization

/// One ttrpc connection's I/O, shared by client and server: a reader thread that hands every
/// incoming frame to `onFrame`, and a writer thread that sends queued frames whole and in order,
/// so async callers never block on the socket. Both threads are plain OS threads (never the
/// Swift concurrency pool) and end when the stream does.
final class FrameConnection: Sendable {
    let stream: any ByteStream
    private let outgoing = BlockingQueue<[UInt8]>()
    /// Bytes queued but not yet written. A peer that stops reading while we keep producing
    /// frames would otherwise grow our memory without bound.
    private let queuedBytes = Mutex(0)
    static let maxQueuedBytes = 64 << 20
    /// Closed (never pushed to) when the connection ends, so waiters wake.
    private let closedLatch = BlockingQueue<Never>()
    private let closeReason = Mutex<String?>(nil)
    private let onClose = Mutex<(@Sendable (String) -> Void)?>(nil)

    init(stream: any ByteStream) {
        self.stream = stream
    }

    /// Starts the reader and writer threads. `onFrame` runs on the reader thread and must not
    /// block; `onClose` runs once when the connection ends. `confine`, if given, runs first on
    /// each thread (a seccomp filter: the threads handle the peer's bytes); a thread it fails
    /// for closes the connection instead of serving it.
    func start(
        name: String,
        confine: (@Sendable () throws -> Void)? = nil,
        onFrame: @escaping @Sendable (IncomingFrame) -> Void,
        onClose: @escaping @Sendable (String) -> Void
    ) throws {
        self.onClose.withLock { $0 = onClose }
        do {
            // Detached: nobody joins them; they end with the stream.
            _ = try OSThread.spawn(name: "\(name)-w") { [self] in
                pthread_detach(pthread_self())
                guard confined(by: confine) else { return }
                defer { if confine != nil { SeccompFilter.threadEnding() } }
                writeLoop()
            }
            _ = try OSThread.spawn(name: "\(name)-r") { [self] in
                pthread_detach(pthread_self())
                guard confined(by: confine) else { return }
                defer { if confine != nil { SeccompFilter.threadEnding() } }
                readLoop(onFrame: onFrame)
            }
        } catch {
            close(reason: "could not start the connection's threads: \(error)")
            throw error
        }
    }

    /// Queues one whole frame; false when the connection has already ended.
    @discardableResult
    func send(_ frame: Frame) -> Bool {
        let bytes = frame.encoded
        let overflow = queuedBytes.withLock { queued -> Bool in
            guard queued + bytes.count <= Self.maxQueuedBytes else { return true }
            queued += bytes.count
            return false
        }
        if overflow {
            close(reason: "peer is not reading: more than \(Self.maxQueuedBytes >> 20) MiB of frames queued")
            return false
        }
        return outgoing.push(bytes)
    }

    /// Ends the connection (idempotent): the stream is closed, queued frames are dropped and
    /// `onClose` runs once with the first reason given.
    func close(reason: String) {
        let first = closeReason.withLock { current -> Bool in
            guard current == nil else { return false }
            current = reason
            return true
        }
        guard first else { return }
        stream.close()
        outgoing.close()
        onClose.withLock { $0 }?(reason)
        // Last, so a waiter sees everything `onClose` did.
        closedLatch.close()
    }

    var isClosed: Bool { closeReason.withLock { $0 != nil } }

    /// Why the connection ended, once it has.
    var reasonClosed: String? { closeReason.withLock { $0 } }

    /// Blocks until the connection has ended or the timeout passes; true when it has ended.
    func waitUntilClosed(timeoutNanoseconds: UInt64?) -> Bool {
        _ = closedLatch.pop(timeoutNanoseconds: timeoutNanoseconds)
        return isClosed
    }

    private func confined(by confine: (@Sendable () throws -> Void)?) -> Bool {
        guard let confine else { return true }
        do {
            try confine()
            return true
        } catch {
            close(reason: "cannot confine the connection's thread: \(error)")
            return false
        }
    }

    private func readLoop(onFrame: @Sendable (IncomingFrame) -> Void) {
        var reader = FrameReader(stream: stream)
        while true {
            // A trapped call failed somewhere below: whatever came of it, this thread stops here.
            if SeccompFilter.currentThreadWasTrapped {
                close(reason: "the connection's thread made a forbidden system call")
                return
            }
            do {
                guard let incoming = try reader.next() else {
                    close(reason: "peer closed the connection")
                    return
                }
                onFrame(incoming)
            } catch {
                close(reason: "\(error)")
                return
            }
        }
    }

    private func writeLoop() {
        while let bytes = outgoing.pop() {
            if SeccompFilter.currentThreadWasTrapped {
                close(reason: "the connection's thread made a forbidden system call")
                return
            }
            do {
                try bytes.withUnsafeBytes { try stream.write($0) }
                queuedBytes.withLock { $0 -= bytes.count }
            } catch {
                close(reason: "write failed: \(error)")
                return
            }
        }
    }
}
