import GuestMemory
import StateCoding

/// What a virtio-mmio transport holds for a snapshot: the registers the driver wrote and, per
/// queue, where the rings are and where the device is in them. The rings live in guest memory.
public struct VirtioTransportState: Sendable, Equatable {
    public var status: UInt32
    public var deviceFeaturesSelect: UInt32
    public var driverFeaturesSelect: UInt32
    public var driverFeatures: UInt64
    public var queueSelect: UInt32
    public var interruptStatus: UInt32
    public var configGeneration: UInt32
    public var queues: [VirtioQueueState]

    /// More queues than any device of ours has (vsock's 3), so a hostile count allocates little.
    public static let maxQueues = 8
}

public struct VirtioQueueState: Sendable, Equatable {
    public var size: UInt32
    public var descriptorTable: UInt64
    public var driverArea: UInt64
    public var deviceArea: UInt64
    /// The driver enabled the queue; its position is meaningful only then.
    public var ready: Bool
    public var position: Virtqueue.Position
}

extension VirtioMMIOTransport {
    /// Stops processing queues (a snapshot is being taken): calls from vCPU threads, which are
    /// parked, and from host threads (vsock deliveries) leave their buffers in the rings. Waits
    /// for processing already under way to finish.
    public func freeze() {
        let queues = state.withLock { state in
            state.frozen = true
            return state.queues.compactMap(\.queue)
        }
        for queue in queues { _ = queue.position }
    }

    /// Processes queues again, catching up on what arrived while frozen.
    public func thaw() {
        let ready = state.withLock { state in
            state.frozen = false
            return state.queues.indices.filter { state.queues[$0].isReady }
        }
        for index in ready { notifyQueue(UInt32(index)) }
    }

    /// The transport's state. Call while frozen, so no queue moves under it.
    public func saveState() -> VirtioTransportState {
        state.withLock { state in
            VirtioTransportState(
                status: state.status, deviceFeaturesSelect: state.deviceFeaturesSelect,
                driverFeaturesSelect: state.driverFeaturesSelect, driverFeatures: state.driverFeatures,
                queueSelect: state.queueSelect, interruptStatus: state.interruptStatus,
                configGeneration: state.configGeneration,
                queues: state.queues.map { registers in
                    VirtioQueueState(
                        size: registers.size, descriptorTable: registers.descriptorTable,
                        driverArea: registers.driverArea, deviceArea: registers.deviceArea,
                        ready: registers.isReady,
                        position: registers.queue?.position ?? .init(nextAvailable: 0, nextUsed: 0))
                })
        }
    }

    /// Takes `saved` as this (fresh, never used) transport's state: the queues are rebuilt at
    /// their saved positions, with every ring checked against guest memory as when the driver
    /// enabled them, and a device the driver had activated is activated again. Raises no
    /// interrupt and processes nothing (`resumeAfterRestore` does, once the VM's interrupt
    /// controllers are restored). A state this device could not have had is refused, and the
    /// transport is left as it was.
    public func restoreState(_ saved: VirtioTransportState) throws(VirtioRestoreError) {
        let maxSizes = device.queueMaxSizes
        guard saved.queues.count == maxSizes.count else {
            throw .init("has \(saved.queues.count) queues, the device \(maxSizes.count)")
        }
        let knownStatus =
            Virtio.Status.acknowledge | Virtio.Status.driver | Virtio.Status.driverOK
            | Virtio.Status.featuresOK | Virtio.Status.needsReset | Virtio.Status.failed
        guard saved.status & ~knownStatus == 0 else { throw .init("status 0x\(String(saved.status, radix: 16)) has unknown bits") }
        guard saved.driverFeatures & ~offeredFeatures == 0 else {
            throw .init(
                "the driver accepted features 0x\(String(saved.driverFeatures & ~offeredFeatures, radix: 16)) this device does not offer")
        }
        var queues: [QueueRegisters] = []
        for (index, (queue, maxSize)) in zip(saved.queues, maxSizes).enumerated() {
            var registers = QueueRegisters(maxSize: maxSize)
            registers.size = queue.size
            registers.descriptorTable = queue.descriptorTable
            registers.driverArea = queue.driverArea
            registers.deviceArea = queue.deviceArea
            if queue.ready {
                do throws(VirtqueueError) {
                    let virtqueue = try registers.makeQueue(
                        index: index, memory: memory, indirectDescriptors: saved.driverFeatures & Virtio.Feature.indirectDescriptors != 0)
                    virtqueue.resume(at: queue.position)
                    registers.queue = virtqueue
                } catch {
                    throw .init("queue \(index): \(error)")
                }
            }
            queues.append(registers)
        }
        let live = saved.status & Virtio.Status.driverOK != 0 && saved.status & Virtio.Status.needsReset == 0
        if live {
            do throws(VirtioDeviceError) {
                try device.activate(features: saved.driverFeatures, queues: queues.map(\.queue))
            } catch {
                throw .init("the device refused its saved activation: \(error)")
            }
        }
        state.withLock { state in
            state = TransportState(
                status: saved.status, deviceFeaturesSelect: saved.deviceFeaturesSelect,
                driverFeaturesSelect: saved.driverFeaturesSelect, driverFeatures: saved.driverFeatures,
                queueSelect: saved.queueSelect, queues: queues, interruptStatus: saved.interruptStatus,
                configGeneration: saved.configGeneration, frozen: state.frozen)
        }
    }

    /// After a restore, once the guest's interrupt controllers are back: lets the device act on
    /// its restore (vsock tells the guest its connections are gone), raises an interrupt the
    /// guest had not acknowledged yet, and takes whatever the driver queued before the snapshot.
    /// `sendingDeviceEvents`: let the device tell the guest it was restored (`restored(queues:)`).
    public func resumeAfterRestore(sendingDeviceEvents: Bool = true) {
        let (live, queues, pending) = state.withLock { state in
            (
                state.status & Virtio.Status.driverOK != 0 && state.status & Virtio.Status.needsReset == 0,
                state.queues.map(\.queue), state.interruptStatus != 0
            )
        }
        guard live else {
            if pending { interrupt.trigger() }
            return
        }
        do {
            if sendingDeviceEvents, try device.restored(queues: queues) {
                state.withLock { $0.interruptStatus |= Virtio.Interrupt.usedBuffer }
            }
        } catch {
            logger.warning("virtio-mmio: device could not resume: \(error)")
        }
        if state.withLock({ $0.interruptStatus != 0 }) { interrupt.trigger() }
        for (index, queue) in queues.enumerated() where queue != nil { notifyQueue(UInt32(index)) }
    }
}

/// Why a saved transport state was refused, in the transport's terms.
public struct VirtioRestoreError: Error, CustomStringConvertible, Sendable, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}

extension VirtioTransportState: StateCodable {
    public func encode(to writer: inout StateWriter) {
        writer.put(status)
        writer.put(deviceFeaturesSelect)
        writer.put(driverFeaturesSelect)
        writer.put(driverFeatures)
        writer.put(queueSelect)
        writer.put(interruptStatus)
        writer.put(configGeneration)
        writer.put(array: queues)
    }

    public init(from reader: inout StateReader) throws(StateDecodingError) {
        status = try reader.read(UInt32.self, "virtio status")
        deviceFeaturesSelect = try reader.read(UInt32.self, "virtio device features select")
        driverFeaturesSelect = try reader.read(UInt32.self, "virtio driver features select")
        driverFeatures = try reader.read(UInt64.self, "virtio driver features")
        queueSelect = try reader.read(UInt32.self, "virtio queue select")
        interruptStatus = try reader.read(UInt32.self, "virtio interrupt status")
        configGeneration = try reader.read(UInt32.self, "virtio config generation")
        queues = try reader.readArray(VirtioQueueState.self, "virtio queues", limit: Self.maxQueues)
    }
}

extension VirtioQueueState: StateCodable {
    public func encode(to writer: inout StateWriter) {
        writer.put(size)
        writer.put(descriptorTable)
        writer.put(driverArea)
        writer.put(deviceArea)
        writer.put(ready)
        writer.put(position.nextAvailable)
        writer.put(position.nextUsed)
    }

    public init(from reader: inout StateReader) throws(StateDecodingError) {
        size = try reader.read(UInt32.self, "virtqueue size")
        descriptorTable = try reader.read(UInt64.self, "virtqueue descriptor table")
        driverArea = try reader.read(UInt64.self, "virtqueue driver area")
        deviceArea = try reader.read(UInt64.self, "virtqueue device area")
        ready = try reader.readBool("virtqueue ready")
        position = Virtqueue.Position(
            nextAvailable: try reader.read(UInt16.self, "virtqueue next available"),
            nextUsed: try reader.read(UInt16.self, "virtqueue next used"))
    }
}
