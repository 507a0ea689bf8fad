/// A virtio device model behind a transport. The transport owns feature negotiation, the status
/// state machine, queue registers and interrupts; the device owns its config space and requests.
///
/// Calls come from vCPU threads (and later an ioeventfd worker), possibly at once:
/// `processQueue` for one queue is serialised by that queue; everything else must be thread-safe.
public protocol VirtioDevice: AnyObject, Sendable {
    /// Virtio device type (`Virtio.DeviceType`).
    var deviceType: UInt32 { get }
    /// Feature bits offered to the driver. The transport adds `Virtio.Feature.version1` itself.
    var offeredFeatures: UInt64 { get }
    /// One entry per virtqueue: the largest size the device accepts (a power of 2).
    var queueMaxSizes: [UInt16] { get }

    /// Device-specific configuration space; `offset` is relative to its start. Out of range reads 0.
    func readConfig(offset: UInt64, into data: UnsafeMutableRawBufferPointer)
    func writeConfig(offset: UInt64, _ data: UnsafeRawBufferPointer)

    /// The driver set DRIVER_OK. `queues[i]` is nil when the driver did not enable queue `i`.
    /// Throwing marks the device DEVICE_NEEDS_RESET.
    func activate(features: UInt64, queues: [Virtqueue?]) throws(VirtioDeviceError)

    /// The driver notified `queue`: consume its available buffers. Returns true when the driver
    /// asked to be interrupted about the buffers used. Throwing marks the device DEVICE_NEEDS_RESET.
    func processQueue(_ queue: Virtqueue) throws(VirtqueueError) -> Bool

    /// The driver wrote 0 to Status: forget everything negotiated.
    func reset()

    /// The device was restored from a snapshot into a new VM, with the driver's queues as they
    /// were (`queues[i]` nil when not enabled), and the guest is about to run again. Returns true
    /// when it used buffers the driver should be interrupted about.
    func restored(queues: [Virtqueue?]) throws(VirtqueueError) -> Bool
}

extension VirtioDevice {
    /// Most devices have nothing of their own to redo: their requests complete synchronously.
    public func restored(queues: [Virtqueue?]) throws(VirtqueueError) -> Bool { false }
}

/// Why a device refused DRIVER_OK.
public struct VirtioDeviceError: Error, CustomStringConvertible, Sendable {
    public let description: String

    public init(_ description: String) {
        self.description = description
    }
}
