#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import HostOS
import VMM

/// What a template was made from and for, written next to its state and memory
/// (`manifest.json`). A clone is made only where every dependency is still the same: the kernel,
/// the guest initramfs (agent and modules), the VM's size, rund's template and snapshot
/// formats; the CPU is checked by the snapshot itself (`MachineSnapshot.check`).
public struct TemplateManifest: Codable, Sendable, Equatable {
    /// This manifest's own layout.
    public static let currentFormat = 1

    public var format: Int
    public var name: String
    /// `SandboxTemplate.rundVersion` of the rund that made it.
    public var rundVersion: String
    /// `MachineSnapshot.formatVersion` of the saved machine state.
    public var snapshotFormat: UInt32
    public var dependencies: TemplateDependencies
    public var memoryMiB: Int
    public var vcpuCount: Int
    /// The memory file as written: a rewrite of it (a flipped byte) changes these.
    public var memoryFile: FileFingerprint
    /// When it was made (seconds since the epoch), and how long its guest took to boot.
    public var createdAt: Int64
    public var bootMilliseconds: Int
}

/// The guest a template holds: kernel and initramfs, identified cheaply (no hashing of large
/// files on every sandbox start, as for the initramfs cache).
public struct TemplateDependencies: Codable, Sendable, Equatable {
    public var kernelVersion: String
    public var kernel: FileFingerprint
    /// The guest initramfs cache key (`GuestInitramfs.cacheKey`): agent binary, kernel, modules.
    public var initramfs: String

    public init(kernelVersion: String, kernel: FileFingerprint, initramfs: String) {
        self.kernelVersion = kernelVersion
        self.kernel = kernel
        self.initramfs = initramfs
    }

    /// Why `self` (a template's) is not `current`, or nil when they match.
    func mismatch(against current: TemplateDependencies) -> String? {
        if kernelVersion != current.kernelVersion {
            return "it holds kernel \(kernelVersion), the current kernel is \(current.kernelVersion)"
        }
        if kernel != current.kernel { return "the kernel file changed since it was made" }
        if initramfs != current.initramfs { return "the guest agent or its modules changed since it was made" }
        return nil
    }
}

/// A file's identity as `stat` gives it: device, inode, size and modification time.
public struct FileFingerprint: Codable, Sendable, Equatable {
    public var device: UInt64
    public var inode: UInt64
    public var size: Int64
    public var modifiedNanoseconds: Int64

    public init(device: UInt64, inode: UInt64, size: Int64, modifiedNanoseconds: Int64) {
        self.device = device
        self.inode = inode
        self.size = size
        self.modifiedNanoseconds = modifiedNanoseconds
    }

    init(_ status: stat) {
        device = UInt64(status.st_dev)
        inode = UInt64(status.st_ino)
        size = Int64(status.st_size)
        modifiedNanoseconds = Int64(status.st_mtim.tv_sec) &* 1_000_000_000 &+ Int64(status.st_mtim.tv_nsec)
    }

    static func of(_ descriptor: FileDescriptor) throws -> FileFingerprint {
        FileFingerprint(try FileSystem.status(of: descriptor))
    }

    static func of(path: String) throws -> FileFingerprint {
        guard let status = try FileSystem.status(at: nil, path) else {
            throw SandboxError("cannot find \(path)")
        }
        return FileFingerprint(status)
    }
}
