/// What serves the host end (CID 2) of the vsock device's stream connections, behind the
/// device and its connection state machine (`VsockConnections`): today the in-process
/// `VsockHostEndpoint` (`InProcessVsockBackend`); a Unix-socket backend for a containerd shim
/// would be another conformer, with no change to the queues, packets or state machine (only
/// `VirtioVsock.init` picks the backend).
///
/// The state machine owns packets, credit and every buffered byte; a backend decides which guest
/// connections are taken and is told when a connection changed. It acts on connections through
/// `VsockConnections`' host-side operations (`openConnection`, `read`, `write`, `shutdown`,
/// `close`, `abandon`, `resetAll`), run under the device lock (`VsockCore.withState`).
///
/// Every requirement but `deviceUnlocked` is called with the device lock held: a conformer
/// records what it learns and returns, never blocks and never calls back into the device.
protocol VsockBackend: AnyObject, Sendable {
    /// Whether guest connections to host `port` are served: the device never picks such a port
    /// for a connection the host opens.
    func isListening(onPort port: UInt32) -> Bool

    /// Whether a guest connection to host `port` would be taken now (someone listens there and has
    /// room for one more). A connection refused here gets RST.
    func canAccept(onPort port: UInt32) -> Bool

    /// The guest's connection `id` to host `port` was taken (the guest gets RESPONSE): it waits in
    /// the backend until the host end claims it.
    func accepted(_ id: UInt64, onPort port: UInt32)

    /// Connection `id` changed in a way the host end may be waiting for: established, data or end
    /// of stream to read, room to write, shut down, reset or dropped.
    func connectionChanged(_ id: UInt64)

    /// The device is resetting every connection: gives up the accepted connections the host end
    /// never claimed, which the device then drops.
    func takeUnclaimedConnections() -> [UInt64]

    /// Called after the device lock is released, following any of the calls above: the place to
    /// act on what they recorded (the in-process endpoint wakes its blocked threads here).
    func deviceUnlocked()
}
