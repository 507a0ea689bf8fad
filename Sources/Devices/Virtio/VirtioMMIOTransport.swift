import GuestMemory
import Logging
import Synchronization
import Untrusted

/// The virtio-mmio version 2 transport (spec 4.2): registers, feature negotiation, the device
/// status state machine, queue setup and interrupts, in front of one `VirtioDevice`.
/// Thread-safe: several vCPUs (and an ioeventfd worker) may call it at once.
public final class VirtioMMIOTransport: MMIODevice {
    public let device: any VirtioDevice
    let memory: GuestMemory
    let interrupt: any InterruptLine
    /// The driver (the guest) triggers every line it logs, so each is rate-limited.
    let logger: RateLimitedLogger
    let offeredFeatures: UInt64
    let state: Mutex<TransportState>

    struct TransportState {
        var status: UInt32 = 0
        var deviceFeaturesSelect: UInt32 = 0
        var driverFeaturesSelect: UInt32 = 0
        var driverFeatures: UInt64 = 0
        var queueSelect: UInt32 = 0
        var queues: [QueueRegisters]
        var interruptStatus: UInt32 = 0
        /// Bumped whenever the device's config space changes (a clone's disk gets its medium).
        var configGeneration: UInt32 = 0
        /// While the machine is paused for a snapshot no queue is processed (a host thread's
        /// vsock delivery included); `thaw` catches up.
        var frozen = false

        var selectedQueue: Int? {
            Int(queueSelect) < queues.count ? Int(queueSelect) : nil
        }
    }

    /// Where in its slot the driver writes a queue's index to notify it (for ioeventfds).
    public static let queueNotifyOffset: UInt64 = Register.queueNotify

    public init(
        device: any VirtioDevice, memory: GuestMemory, interrupt: any InterruptLine,
        logger: Logger = Logger(label: "rund.devices.virtio-mmio")
    ) {
        self.device = device
        self.memory = memory
        self.interrupt = interrupt
        var logger = logger
        logger[metadataKey: "virtio-device"] = "\(device.deviceType)"
        self.logger = RateLimitedLogger(logger)
        // Our queues implement indirect descriptors but not event indices.
        self.offeredFeatures =
            (device.offeredFeatures & ~Virtio.Feature.eventIndex)
            | Virtio.Feature.version1 | Virtio.Feature.indirectDescriptors
        self.state = Mutex(TransportState(queues: device.queueMaxSizes.map(QueueRegisters.init(maxSize:))))
    }

    // MARK: MMIODevice

    public func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        data.storeLittleEndian(0)
        if offset >= Register.config {
            guard [1, 2, 4].contains(data.count) else { return badWidth("read", offset, data.count) }
            device.readConfig(offset: offset - Register.config, into: data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else { return badWidth("read", offset, data.count) }
        data.storeLittleEndian(UInt64(readRegister(offset)))
    }

    public func write(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        if offset >= Register.config {
            guard [1, 2, 4].contains(data.count) else { return badWidth("write", offset, data.count) }
            device.writeConfig(offset: offset - Register.config, data)
            return
        }
        guard data.count == 4, offset % 4 == 0 else { return badWidth("write", offset, data.count) }
        let value = UInt32(truncatingIfNeeded: data.littleEndianValue)
        if offset == Register.queueNotify {
            notifyQueue(value)
        } else {
            writeRegister(offset, value)
        }
    }

    /// The driver notified queue `index` (a QueueNotify write, or its ioeventfd firing):
    /// processes the queue synchronously on the calling thread. Returns false when the queue
    /// could not be processed (not ready, frozen, or the device needs a reset).
    @discardableResult
    public func notifyQueue(_ index: UInt32) -> Bool {
        let queue = state.withLock { state -> Virtqueue? in
            guard !state.frozen, state.status & Virtio.Status.driverOK != 0, state.status & Virtio.Status.needsReset == 0,
                Int(index) < state.queues.count
            else { return nil }
            return state.queues[Int(index)].queue
        }
        guard let queue else { return false }
        do {
            if try device.processQueue(queue) { raise(Virtio.Interrupt.usedBuffer) }
            return true
        } catch {
            markNeedsReset("queue \(index): \(error)")
            return false
        }
    }

    // MARK: Registers

    private func readRegister(_ offset: UInt64) -> UInt32 {
        state.withLock { state in
            switch offset {
            case Register.magicValue: return Self.magic
            case Register.version: return Self.version
            case Register.deviceID: return device.deviceType
            case Register.vendorID: return 0
            case Register.deviceFeatures:
                guard state.deviceFeaturesSelect < 2 else { return 0 }
                return UInt32(truncatingIfNeeded: offeredFeatures >> (32 * UInt64(state.deviceFeaturesSelect)))
            case Register.queueSizeMax:
                return state.selectedQueue.map { UInt32(state.queues[$0].maxSize) } ?? 0
            case Register.queueReady:
                return state.selectedQueue.map { state.queues[$0].isReady ? 1 : 0 } ?? 0
            case Register.interruptStatus: return state.interruptStatus
            case Register.status: return state.status
            case Register.configGeneration: return state.configGeneration
            default: return 0
            }
        }
    }

    private func writeRegister(_ offset: UInt64, _ value: UInt32) {
        var failure: String?
        var activated = false
        state.withLock { state in
            switch offset {
            case Register.deviceFeaturesSelect: state.deviceFeaturesSelect = value
            case Register.driverFeaturesSelect: state.driverFeaturesSelect = value
            case Register.driverFeatures:
                // Features are fixed once the driver set FEATURES_OK.
                guard state.status & Virtio.Status.featuresOK == 0, state.driverFeaturesSelect < 2 else { return }
                state.driverFeatures = state.driverFeatures.replacingHalf(high: state.driverFeaturesSelect == 1, with: value)
            case Register.queueSelect: state.queueSelect = value
            case Register.queueSize, Register.queueDescriptorLow, Register.queueDescriptorHigh,
                Register.queueDriverLow, Register.queueDriverHigh, Register.queueDeviceLow, Register.queueDeviceHigh:
                writeQueueRegister(offset, value, &state)
            case Register.queueReady:
                failure = setQueueReady(value == 1, &state)
            case Register.interruptAcknowledge: state.interruptStatus &= ~value
            case Register.status:
                (activated, failure) = writeStatus(value, &state)
            default:
                logger.debug("virtio-mmio: write to unknown register 0x\(String(offset, radix: 16)) ignored")
            }
        }
        if activated { logger.debug("virtio-mmio: driver ready") }
        if let failure { markNeedsReset(failure) }
    }

    private func writeQueueRegister(_ offset: UInt64, _ value: UInt32, _ state: inout TransportState) {
        // A live queue's layout cannot change under the device: the driver must disable it first.
        guard let index = state.selectedQueue, !state.queues[index].isReady else { return }
        switch offset {
        case Register.queueSize: state.queues[index].size = value
        case Register.queueDescriptorLow, Register.queueDescriptorHigh:
            state.queues[index].descriptorTable = state.queues[index].descriptorTable
                .replacingHalf(high: offset == Register.queueDescriptorHigh, with: value)
        case Register.queueDriverLow, Register.queueDriverHigh:
            state.queues[index].driverArea = state.queues[index].driverArea
                .replacingHalf(high: offset == Register.queueDriverHigh, with: value)
        default:
            state.queues[index].deviceArea = state.queues[index].deviceArea
                .replacingHalf(high: offset == Register.queueDeviceHigh, with: value)
        }
    }

    /// Enables or disables the selected queue; returns a failure reason for a bad configuration.
    private func setQueueReady(_ ready: Bool, _ state: inout TransportState) -> String? {
        guard let index = state.selectedQueue else { return nil }
        guard ready else {
            state.queues[index].queue?.deactivate()
            state.queues[index].queue = nil
            return nil
        }
        guard !state.queues[index].isReady else { return nil }
        do throws(VirtqueueError) {
            state.queues[index].queue = try state.queues[index].makeQueue(
                index: index, memory: memory, indirectDescriptors: state.driverFeatures & Virtio.Feature.indirectDescriptors != 0)
            return nil
        } catch {
            return "queue \(index): \(error)"
        }
    }

    /// Applies a Status write; returns whether the device was activated and any failure reason.
    private func writeStatus(_ value: UInt32, _ state: inout TransportState) -> (Bool, String?) {
        guard value != 0 else {
            reset(&state)
            return (false, nil)
        }
        let old = state.status & ~Virtio.Status.needsReset
        var new = value & ~Virtio.Status.needsReset
        guard new & old == old else {
            logger.debug("virtio-mmio: status write 0x\(String(value, radix: 16)) clears bits; ignored")
            return (false, nil)
        }
        let added = new & ~old
        if added & Virtio.Status.featuresOK != 0 {
            let accepted = state.driverFeatures & ~offeredFeatures == 0 && state.driverFeatures & Virtio.Feature.version1 != 0
            // Leaving FEATURES_OK clear tells the driver we cannot work with its feature set.
            if !accepted { new &= ~Virtio.Status.featuresOK }
        }
        var failure: String?
        var activated = false
        if added & Virtio.Status.driverOK != 0 {
            if new & Virtio.Status.featuresOK == 0 {
                failure = "driver set DRIVER_OK without FEATURES_OK"
            } else {
                do throws(VirtioDeviceError) {
                    try device.activate(features: state.driverFeatures, queues: state.queues.map(\.queue))
                    activated = true
                } catch {
                    failure = "activation: \(error)"
                }
            }
        }
        state.status = new | (state.status & Virtio.Status.needsReset)
        return (activated, failure)
    }

    private func reset(_ state: inout TransportState) {
        for queue in state.queues { queue.queue?.deactivate() }
        // The generation survives a reset: a driver must never see an old value come back.
        state = TransportState(
            queues: device.queueMaxSizes.map(QueueRegisters.init(maxSize:)),
            configGeneration: state.configGeneration, frozen: state.frozen)
        device.reset()
    }

    // MARK: Interrupts and errors

    /// The device's config space changed (a disk got its medium): the driver rereads it.
    public func configurationChanged() {
        state.withLock { $0.configGeneration &+= 1 }
        raise(Virtio.Interrupt.configChange)
    }

    private func raise(_ cause: UInt32) {
        state.withLock { $0.interruptStatus |= cause }
        interrupt.trigger()
    }

    /// The device cannot go on until the driver resets it (spec 2.1.2): say so and interrupt.
    private func markNeedsReset(_ reason: String) {
        logger.warning("virtio-mmio: device needs reset: \(reason)")
        state.withLock { state in
            state.status |= Virtio.Status.needsReset
            state.interruptStatus |= Virtio.Interrupt.configChange
        }
        interrupt.trigger()
    }

    private func badWidth(_ access: String, _ offset: UInt64, _ width: Int) {
        logger.debug("virtio-mmio: \(width)-byte \(access) at 0x\(String(offset, radix: 16)) ignored")
    }
}
