/// A connection is named by its two ports; the CIDs are fixed (host 2, the guest's own).
struct VsockConnectionKey: Hashable, Sendable {
    var hostPort: UInt32
    var guestPort: UInt32
}

/// One stream connection's state, guarded by the device lock. Counters are the spec's
/// free-running 32-bit values and wrap.
struct VsockConnection {
    enum Phase: Equatable {
        /// Host-initiated: REQUEST queued or sent, no RESPONSE yet.
        case connecting
        case established
        /// The guest answered RST (refused) or reset an established connection, or the device was reset.
        case reset(refused: Bool)
    }

    let id: UInt64
    let key: VsockConnectionKey
    var phase: Phase
    /// Still in the port table: the guest knows this connection.
    var attached = true
    /// The host stream was closed; the entry lives on only until the guest confirms the close.
    var hostClosed = false

    // Guest → host.
    var received = VsockByteBuffer()
    var receivedTotal: UInt32 = 0
    var forwarded: UInt32 = 0
    /// The forward count the guest last heard from us.
    var advertisedForwarded: UInt32 = 0
    var creditUpdateQueued = false

    // Host → guest.
    var outgoing = VsockByteBuffer()
    var sentTotal: UInt32 = 0
    var peerBufferAllocation: UInt32
    var peerForwarded: UInt32

    /// SHUTDOWN flags the guest sent, the host asked for, and the host already told the guest.
    var guestShutdown: UInt32 = 0
    var hostShutdown: UInt32 = 0
    var shutdownSent: UInt32 = 0

    init(id: UInt64, key: VsockConnectionKey, phase: Phase, peerBufferAllocation: UInt32 = 0, peerForwarded: UInt32 = 0) {
        self.id = id
        self.key = key
        self.phase = phase
        self.peerBufferAllocation = peerBufferAllocation
        self.peerForwarded = peerForwarded
    }

    /// Bytes the guest may still accept: its buffer minus what is in flight (spec 5.10.6.3).
    var peerCredit: Int {
        let inFlight = sentTotal &- peerForwarded
        return inFlight > peerBufferAllocation ? 0 : Int(peerBufferAllocation - inFlight)
    }

    var isReset: Bool {
        if case .reset = phase { return true }
        return false
    }
}
