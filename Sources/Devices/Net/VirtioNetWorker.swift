import HostOS
import Logging
import Synchronization

/// The I/O thread of one virtio-net device: it waits on the backend (frames for the guest), on
/// the two queues' ioeventfds (KVM signals them when the guest notifies, without a userspace
/// exit) and on a stop eventfd, and moves the queues through the transport, which raises the
/// interrupt. vCPU threads never touch the tap.
public final class VirtioNetWorker: Sendable {
    /// Signalled by KVM when the guest notifies queue 0 (new receive buffers) or 1 (frames to send).
    public let receiveKick: EventFD
    public let transmitKick: EventFD
    private let stopRequest: EventFD
    private let device: VirtioNet
    private let transport: VirtioMMIOTransport
    private let thread = Mutex<OSThread?>(nil)
    private let confine: (@Sendable () -> Void)?

    /// `confine` runs first on the thread (the VMM's seccomp filter for it).
    public init(device: VirtioNet, transport: VirtioMMIOTransport, confine: (@Sendable () -> Void)? = nil) throws {
        self.device = device
        self.transport = transport
        self.confine = confine
        receiveKick = try EventFD(nonBlocking: true)
        transmitKick = try EventFD(nonBlocking: true)
        stopRequest = try EventFD(nonBlocking: true)
    }

    public func start() throws {
        let started = try OSThread.spawn(name: "virtio-net") { [self] in
            confine?()
            run()
            if confine != nil { SeccompFilter.threadEnding() }
        }
        thread.withLock { $0 = started }
    }

    /// Ends the thread and waits for it. Idempotent.
    public func stop() {
        guard
            let running = thread.withLock({ current -> OSThread? in
                defer { current = nil }
                return current
            })
        else { return }
        try? stopRequest.signal()
        running.join()
    }

    /// How long the tap is left alone after the receive queue could not be processed (not ready
    /// yet, paused, or broken until the driver resets it) before the next try.
    static let parkedRetryMilliseconds: Int32 = 100

    private func run() {
        var parked = false
        while true {
            // A frame waiting for buffers, or a queue that cannot take frames now: leave the tap
            // alone until the guest posts buffers (or, parked, for a moment), so it cannot spin us.
            let watchBackend = !parked && device.wantsBackendFrames
            guard
                let ready = try? FileDescriptor.pollReadable(
                    [
                        stopRequest.descriptor, transmitKick.descriptor, receiveKick.descriptor,
                        watchBackend ? device.backend.readableDescriptor : nil,
                    ],
                    milliseconds: parked ? Self.parkedRetryMilliseconds : -1)
            else { return }
            if ready[0] { return }
            if ready[1] {
                _ = try? transmitKick.wait()
                transport.notifyQueue(UInt32(VirtioNet.transmitQueue))
            }
            if ready[2] { _ = try? receiveKick.wait() }
            if ready[2] || ready[3] || parked {
                parked = !transport.notifyQueue(UInt32(VirtioNet.receiveQueue))
            }
        }
    }
}
