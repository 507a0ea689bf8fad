import Devices
import GuestMemory
import Logging
import Synchronization
import Untrusted

/// Guest-physical memory the VMM mapped read-only (a pmem image). KVM turns a guest's write there
/// into an MMIO exit; this drops it, counts it and logs it (rate-limited: the guest chooses how
/// often). Reads are served by the memory slot and never reach here; one that did reads all ones.
final class ReadOnlyWindow: MMIODevice {
    let base: GuestAddress
    private let droppedWrites = Atomic<UInt64>(0)
    private let logger: RateLimitedLogger

    init(base: GuestAddress, logger: Logger = Logger(label: "rund.vmm.pmem")) {
        self.base = base
        self.logger = RateLimitedLogger(logger)
    }

    var droppedWriteCount: UInt64 { droppedWrites.load(ordering: .relaxed) }

    func read(offset: UInt64, into data: UnsafeMutableRawBufferPointer) {
        for i in 0..<data.count { data[i] = 0xff }
    }

    func write(offset: UInt64, _ data: UnsafeRawBufferPointer) {
        droppedWrites.add(1, ordering: .relaxed)
        logger.debug("the guest wrote \(data.count) bytes to read-only memory at \(base) + \(offset): dropped")
    }
}
