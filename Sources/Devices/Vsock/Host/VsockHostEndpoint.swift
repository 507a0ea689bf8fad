/// The host end of a `VirtioVsock` device (host CID 2), in this process: its connections are
/// `VsockStream`s with no socket in between. Thread-safe; the blocking calls wait on the calling
/// thread only and never hold up a vCPU. Serves the device through `InProcessVsockBackend`.
public final class VsockHostEndpoint: Sendable {
    let core: VsockCore
    let host: InProcessVsockBackend

    init(core: VsockCore, host: InProcessVsockBackend) {
        self.core = core
        self.host = host
    }

    public var guestCID: UInt32 { UInt32(truncatingIfNeeded: core.guestCID) }

    /// Accepts guest connections to host `port` (the guest connects to CID 2, `port`).
    public func listen(port: UInt32) throws(VsockError) -> VsockListener {
        let id = try core.withState { [host] (_: inout VsockConnections) throws(VsockError) -> UInt64 in try host.listen(port: port) }
        return VsockListener(core: core, host: host, port: port, id: id)
    }

    /// Connects to a guest listening on `guestPort`; blocks until the guest answers.
    /// Throws `connectionRefused` when nothing listens there, `timedOut` when the guest does
    /// not answer (its driver not up yet: retry).
    public func connect(guestPort: UInt32, timeout: Duration? = .seconds(10)) throws(VsockError) -> VsockStream {
        let id = try core.withState(delivering: true) { (state: inout VsockConnections) throws(VsockError) -> UInt64 in
            try state.openConnection(guestPort: guestPort)
        }
        do throws(VsockError) {
            _ = try core.waitFor("connect to guest port \(guestPort)", on: .connection(id), with: host, timeout: timeout) {
                (state: inout VsockConnections) throws(VsockError) -> UInt64? in try state.awaitResponse(id)
            }
        } catch {
            core.withState(delivering: true) { $0.abandon(id) }
            throw error
        }
        return try VsockStream(core: core, host: host, id: id)
    }

    /// Resets every connection (the guest is sent RST for each): blocked reads, writes and
    /// connects fail with `connectionReset` at once. For when the VM stopped or the host gives up
    /// on the guest; listeners stay open.
    public func resetAllConnections() {
        core.withState(delivering: true) { $0.resetAll(tellingGuest: true) }
    }
}

/// Guest connections to one host port, waiting to be accepted. Closing it (or dropping it)
/// resets the connections not yet accepted.
public final class VsockListener: Sendable {
    let core: VsockCore
    let host: InProcessVsockBackend
    public let port: UInt32
    let id: UInt64

    init(core: VsockCore, host: InProcessVsockBackend, port: UInt32, id: UInt64) {
        self.core = core
        self.host = host
        self.port = port
        self.id = id
    }

    deinit { close() }

    /// The next guest connection; blocks until one arrives or `timeout` passes (nil: forever).
    public func accept(timeout: Duration? = nil) throws(VsockError) -> VsockStream {
        let connection = try core.waitFor("accept on port \(port)", on: .listener(port: port), with: host, timeout: timeout) {
            [host, port, id] (_: inout VsockConnections) throws(VsockError) -> UInt64? in
            try host.claim(port: port, listener: id)
        }
        return try VsockStream(core: core, host: host, id: connection)
    }

    public func close() {
        core.withState(delivering: true) { [host, port, id] state in
            for connection in host.closeListener(port: port, listener: id) { state.abandon(connection) }
        }
    }
}

/// Which half of a stream `shutdown` ends.
public enum VsockShutdown: Sendable {
    /// No more reads: the guest is told it may stop sending; unread data is dropped.
    case read
    /// No more writes: the guest reads end-of-stream after the data already written.
    case write
    case both

    var flags: UInt32 {
        switch self {
        case .read: return VsockHeader.ShutdownFlag.receive
        case .write: return VsockHeader.ShutdownFlag.send
        case .both: return VsockHeader.ShutdownFlag.both
        }
    }
}

/// One stream connection between the host and the guest: a byte stream with read-some,
/// write-all and close, matching the TTRPC target's `ByteStream` requirements exactly
/// (`read(into:)`, `write(_:)`, `close()`). Reads and writes may run on different threads at
/// once; `close` wakes a blocked reader. Dropping the stream closes it.
public final class VsockStream: Sendable {
    let core: VsockCore
    let host: InProcessVsockBackend
    let id: UInt64
    public let hostPort: UInt32
    public let guestPort: UInt32

    init(core: VsockCore, host: InProcessVsockBackend, id: UInt64) throws(VsockError) {
        let key = try core.withState { (state: inout VsockConnections) throws(VsockError) -> VsockConnectionKey in
            guard let connection = state.connections[id] else { throw .closed }
            return connection.key
        }
        self.core = core
        self.host = host
        self.id = id
        hostPort = key.hostPort
        guestPort = key.guestPort
    }

    deinit { close() }

    /// Reads what is available, at most `buffer.count` bytes, blocking until something is.
    /// Returns 0 at end of stream (the guest shut down sending or closed). Throws
    /// `connectionReset` once data read before a reset is consumed, `closed` after `close`.
    public func read(into buffer: UnsafeMutableRawBufferPointer) throws(VsockError) -> Int {
        try read(into: buffer, timeout: nil)
    }

    /// `read(into:)` that throws `timedOut` when nothing arrived within `timeout` (nil: forever).
    public func read(into buffer: UnsafeMutableRawBufferPointer, timeout: Duration?) throws(VsockError) -> Int {
        try core.waitFor("read from guest port \(guestPort)", on: .connection(id), with: host, timeout: timeout) {
            [id] (state: inout VsockConnections) throws(VsockError) -> Int? in try state.read(id, into: buffer)
        }
    }

    /// Reads up to `maxCount` bytes; an empty result is end of stream.
    public func read(upTo maxCount: Int, timeout: Duration? = nil) throws(VsockError) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: max(maxCount, 0))
        let count = try bytes.withUnsafeMutableBytes { buffer in
            Result { () throws(VsockError) -> Int in try read(into: buffer, timeout: timeout) }
        }.get()
        bytes.removeSubrange(count...)
        return bytes
    }

    /// Queues all of `bytes` for the guest, blocking while the connection's outgoing buffer is
    /// full (the guest has not granted credit). Throws `brokenPipe` when the guest no longer reads.
    public func write(_ bytes: UnsafeRawBufferPointer) throws(VsockError) {
        try write(bytes, timeout: nil)
    }

    /// `write(_:)` that throws `timedOut` when the bytes were not all queued within `timeout`.
    public func write(_ bytes: UnsafeRawBufferPointer, timeout: Duration?) throws(VsockError) {
        var written = 0
        try core.waitFor("write to guest port \(guestPort)", on: .connection(id), with: host, timeout: timeout) {
            [id] (state: inout VsockConnections) throws(VsockError) -> Void? in
            try state.write(id, bytes, written: &written) ? () : nil
        }
    }

    public func write(_ bytes: [UInt8], timeout: Duration? = nil) throws(VsockError) {
        try bytes.withUnsafeBytes { buffer in
            Result { () throws(VsockError) in try write(buffer, timeout: timeout) }
        }.get()
    }

    public func shutdown(_ direction: VsockShutdown) {
        core.withState(delivering: true) { [id] in $0.shutdown(id, flags: direction.flags) }
    }

    /// Ends the stream: queued data still reaches the guest, followed by a full SHUTDOWN.
    /// Idempotent; later calls on the stream throw `closed`.
    public func close() {
        core.withState(delivering: true) { [id] in $0.close(id) }
    }
}
