import HostOS
import GuestMemory

/// Everything needed to assemble one microVM.
public struct VMConfiguration: Sendable {
    public struct Disk: Sendable {
        /// The backing file; nil for a drive with no medium (capacity 0), which a template
        /// carries for its clones to fill with their own files.
        public var path: String?
        public var readOnly: Bool
        public init(path: String?, readOnly: Bool) {
            self.path = path
            self.readOnly = readOnly
        }
    }

    public enum Console: Sendable, Equatable {
        case standardOutput
        case file(String)
        case none
    }

    /// How to load `kernelPath`.
    public enum KernelFormat: Sendable, Equatable {
        /// A Linux kernel (a bzImage, or an uncompressed ELF vmlinux), entered through the
        /// 64-bit boot protocol.
        case linux
        /// A flat binary copied to `loadAddress` and entered there in long mode with the boot
        /// page tables: freestanding test guests.
        case flatBinary(loadAddress: GuestAddress)
    }

    /// An ELF kernel's pages are mapped from this file while the VM runs (shared with every VM
    /// of the kernel): replace it by renaming a new file over it, never by writing it in place.
    public var kernelPath: String
    public var kernelFormat: KernelFormat
    public var initrdPath: String?
    /// Appended to rund's default command line.
    public var extraCommandLine: String
    public var memoryMiB: Int
    public var vcpuCount: Int
    public var disks: [Disk]
    public var console: Console
    /// Read-only images the guest sees as persistent memory (virtio-pmem, one device each, in the
    /// slots after vsock): each file is mapped shared and read-only at `X86Layout.pmemRanges`, so
    /// every VM of one image reads the same host page-cache pages. Their sizes are multiples of
    /// 4 KiB (EROFS images are).
    public var pmemImages: [String] = []
    /// A virtio-balloon device (in the slot after the pmem devices): the guest reports free pages,
    /// which go back to the host, and the host can ask for memory back (`Machine.balloon`).
    public var balloon = false
    /// Guest RAM in 4 KiB host pages even where the host uses transparent huge pages: a booted
    /// guest's idle memory shrinks (free runs no longer held in 2 MiB pages) and its boot slows
    /// (docs/bench.md, "What 4 KiB pages cost a cold boot"). Clones are not affected: their RAM
    /// is a private mapping of the template's file.
    public var smallGuestPages = false
    /// A network interface: a virtio-net device (in the slot after the balloon) over a tap the
    /// caller opened, moved by its own I/O thread (`VirtioNetWorker`).
    public var network: NetworkInterface? = nil
    /// vsock: when set, the VM gets a virtio-vsock device with this guest CID (3 or more), in the
    /// virtio slot after the disks; its host side is `Machine.vsock`.
    public var vsockGuestCID: UInt32? = nil
    /// When set, the VM ends as `.stalled` once the guest makes no progress for this long: no VM
    /// exit while a vCPU stays runnable (an idle guest, every vCPU halted, is not stalled). A
    /// guest that computes without any I/O for that long is taken for stalled too: for tests
    /// and diagnosis, not for every workload.
    public var stallTimeout: Duration? = nil
    /// Confine each vCPU thread with its seccomp filter before the guest runs (`VCPUConfinement`).
    public var confineThreads = true
    /// Test-only behaviour, for tests that prove a defence works.
    public var testHooks: Set<TestHook> = []

    public enum TestHook: String, Sendable, Hashable, CaseIterable {
        /// The vCPU thread that takes the guest's first boot-marker write makes a system call its
        /// filter forbids (socket): the VM must end with `.confinementBroken`.
        case forbiddenSystemCallAtBootMarker = "forbidden-syscall"
        /// Not the VMM's: the sandbox sends its guest no identity (entropy, time), to show what
        /// a template's clones would share without it.
        case skipGuestIdentity = "skip-guest-identity"
        /// Not the VMM's: the sandbox gives its VM no balloon, to measure what free page
        /// reporting saves (`rund bench density --without-balloon`).
        case noBalloon = "no-balloon"
    }

    public struct NetworkInterface: Sendable {
        /// An open tap (`TapDevice`), in the sandbox's network namespace.
        public var tap: TapDevice
        /// The guest's MAC address (6 bytes, unicast) and the link's MTU.
        public var mac: [UInt8]
        public var mtu: Int
        /// Offer checksum and TCP segmentation offloads (off: plain frames of at most the MTU).
        public var offloads: Bool

        public init(tap: TapDevice, mac: [UInt8], mtu: Int = 1500, offloads: Bool = true) {
            self.tap = tap
            self.mac = mac
            self.mtu = mtu
            self.offloads = offloads
        }
    }

    public static let maxVCPUs = 32
    public static let minMemoryMiB = 32

    public init(
        kernelPath: String, kernelFormat: KernelFormat = .linux, initrdPath: String? = nil, extraCommandLine: String = "",
        memoryMiB: Int = 256,
        vcpuCount: Int = 1, disks: [Disk] = [], console: Console = .standardOutput
    ) {
        self.kernelPath = kernelPath
        self.kernelFormat = kernelFormat
        self.initrdPath = initrdPath
        self.extraCommandLine = extraCommandLine
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.disks = disks
        self.console = console
    }

    /// Checks the numbers before anything is allocated, so a bad request changes nothing.
    public func validate() throws(VMError) {
        guard (1...Self.maxVCPUs).contains(vcpuCount) else { throw .vcpuCountOutOfRange(vcpuCount, maximum: Self.maxVCPUs) }
        guard memoryMiB >= Self.minMemoryMiB else { throw .memoryTooSmall(mebibytes: memoryMiB, minimum: Self.minMemoryMiB) }
        guard memoryMiB <= Self.maxMemoryMiB else { throw .memoryTooLarge(mebibytes: memoryMiB, maximum: Self.maxMemoryMiB) }
        // vsock takes the virtio slot after the disks, pmem devices the ones after it.
        let slots = VirtioSlots.maxDevices - (vsockGuestCID == nil ? 0 : 1) - (balloon ? 1 : 0)
        guard disks.count + pmemImages.count <= slots else { throw .tooManyDisks(disks.count + pmemImages.count, maximum: slots) }
        if let stallTimeout, stallTimeout < .seconds(2) { throw .stallTimeoutTooShort(stallTimeout) }
        if let cid = vsockGuestCID, cid <= 2 || cid == UInt32.max { throw .reservedVsockCID(cid) }
    }

    public static let maxMemoryMiB = 64 * 1024
}

/// Why a VM could not be built or run, as one line in the VMM's own terms (a CLI adds which of
/// its options to change).
public enum VMError: Error, CustomStringConvertible, Sendable, Equatable {
    case vcpuCountOutOfRange(Int, maximum: Int)
    case memoryTooSmall(mebibytes: Int, minimum: Int)
    case memoryTooLarge(mebibytes: Int, maximum: Int)
    case tooManyDisks(Int, maximum: Int)
    case stallTimeoutTooShort(Duration)
    case reservedVsockCID(UInt32)
    /// A kernel or initrd larger than the guest's memory could hold.
    case fileTooLarge(kind: String, path: String, mebibytes: Int, limit: Int)
    case unreadableFile(kind: String, path: String, reason: String)
    /// A pmem image that cannot be mapped as one (empty, not whole pages, too large).
    case badPmemImage(path: String, reason: String)
    case setup(String)

    public var description: String {
        switch self {
        case let .vcpuCountOutOfRange(count, maximum): return "a VM has 1 to \(maximum) vCPUs, not \(count)"
        case let .memoryTooSmall(size, minimum): return "\(size) MiB of guest memory is too little to boot Linux: at least \(minimum) MiB"
        case let .memoryTooLarge(size, maximum): return "\(size) MiB of guest memory is more than the \(maximum) MiB a VM may have"
        case let .tooManyDisks(count, maximum):
            return "\(count) disks and pmem images do not fit in the VM's virtio slots: at most \(maximum)"
        case let .stallTimeoutTooShort(timeout): return "a stall timeout of \(timeout) is too short: at least 2 seconds"
        case let .reservedVsockCID(cid): return "vsock guest CID \(cid) is reserved: guests use 3 to 4294967294"
        case let .fileTooLarge(kind, path, size, limit):
            return "\(kind) \(path) is \(size) MiB, more than the guest's \(limit) MiB of memory"
        case let .unreadableFile(kind, path, reason): return "cannot read \(kind) \(path): \(reason)"
        case let .badPmemImage(path, reason): return "cannot use \(path) as persistent memory: \(reason)"
        case .setup(let text): return text
        }
    }
}

/// How the VM ended. The CLI maps these to exit statuses (see `exitStatus`).
public enum MachineExit: Sendable, Equatable, CustomStringConvertible {
    case poweredOff
    case rebooted
    case guestPanicked(String)
    /// A triple fault or an unrecoverable vCPU state.
    case crashed(String)
    case stoppedBySignal(Int32)
    /// The guest made no progress for the configured stall timeout (what each vCPU was doing).
    case stalled(String)
    /// A VMM thread made a system call its seccomp filter forbids; the VM was stopped.
    case confinementBroken(String)

    public var exitStatus: Int32 {
        switch self {
        case .poweredOff: return 0
        case .rebooted: return 2
        case .guestPanicked: return 3
        case .crashed: return 4
        case .stoppedBySignal(let signal): return 128 + signal
        case .stalled: return 5
        case .confinementBroken: return 6
        }
    }

    public var description: String {
        switch self {
        case .poweredOff: return "guest powered off"
        case .rebooted: return "guest rebooted"
        case .guestPanicked(let line): return "guest kernel panicked: \(line)"
        case .crashed(let reason): return "guest crashed: \(reason)"
        case .stoppedBySignal(let signal): return "stopped by signal \(signal)"
        case .stalled(let report): return "guest made no progress (\(report))"
        case .confinementBroken(let report): return "VM was stopped: \(report)"
        }
    }
}
