import Boot
import CLinux
import Devices
import GuestMemory
import KVM
import StateCoding

/// A paused machine's complete state but its memory, which goes to a file of its own
/// (`GuestMemory.save(toFile:)`): per vCPU everything KVM holds, the VM's irqchip, PIT and
/// clock, the UART and every virtio device. `Machine.snapshot` takes one; `Machine(restoring:)`
/// builds a new machine from one, which resumes where the first one stopped.
///
/// Saved in its own versioned encoding (`encoded()`), framed with a CRC (`StateEnvelope`); what
/// decoding accepts is checked field by field, and `Machine(restoring:)` checks the rest against
/// the configuration and this host before it creates a VM.
public struct MachineSnapshot: Sendable {
    public static let formatVersion: UInt32 = 2
    static let magic = StateMagic("RUNDVMSN", name: "rund machine snapshot")

    public var memoryMiB: Int
    /// Guest RAM as laid out when saved; the memory file holds them back to back in this order.
    public var regions: [SavedRegion]
    /// The host KVM's KVM_GET_SUPPORTED_CPUID when saved: the vCPUs' CPUID and XSAVE layout come
    /// from it, so a snapshot resumes only where KVM offers exactly the same.
    public var supportedCPUID: [kvm_cpuid_entry2]
    public var xsaveSize: Int
    public var vcpus: [VCPUState]
    public var vm: VirtualMachineState
    public var serial: SerialState
    /// In slot order: disks first, then vsock, then the balloon.
    public var virtio: [SavedVirtioDevice]

    /// Bytes the memory file must hold.
    public var memoryFileSize: Int { regions.reduce(0) { $0 + $1.size } }

    public struct SavedRegion: Sendable, Equatable {
        public var base: GuestAddress
        public var size: Int
    }

    public struct SavedVirtioDevice: Sendable, Equatable {
        public enum Kind: Sendable, Equatable {
            /// Capacity in sectors when saved (0 for a template's empty drive).
            case block(readOnly: Bool, capacity: UInt64)
            /// `hadConnections`: the guest had vsock connections when saved, whose host ends a
            /// restored machine does not have: it tells the guest to drop them (TRANSPORT_RESET).
            /// A template never has any (the host does not connect before saving it), and a reset
            /// sent anyway would race the clone's first connection to its agent.
            case vsock(guestCID: UInt32, hadConnections: Bool)
            /// The balloon's `num_pages` (the host's target) and `actual` (the guest's report);
            /// its queues, page reporting among them, are the transport's.
            case balloon(target: UInt32, actual: UInt32)
        }

        public var kind: Kind
        public var transport: VirtioTransportState
    }

    static let maxVirtioDevices = X86Layout.maxVirtioMMIODevices
    static let maxRegions = 8
}

// MARK: encoding

extension MachineSnapshot {
    /// The snapshot as bytes: `StateEnvelope` (magic, version, length, CRC) around the fields.
    public func encoded() -> [UInt8] {
        var writer = StateWriter()
        writer.put(UInt32(clamping: memoryMiB))
        writer.put(UInt32(clamping: regions.count))
        for region in regions {
            writer.put(region.base.rawValue)
            writer.put(UInt64(region.size))
        }
        writer.put(UInt32(clamping: supportedCPUID.count))
        for entry in supportedCPUID { writer.put(abi: entry) }
        writer.put(UInt32(clamping: xsaveSize))
        writer.put(array: vcpus)
        writer.put(vm)
        writer.put(serial)
        writer.put(UInt32(clamping: virtio.count))
        for device in virtio {
            switch device.kind {
            case let .block(readOnly, capacity):
                writer.put(UInt8(1))
                writer.put(readOnly)
                writer.put(capacity)
            case let .vsock(cid, hadConnections):
                writer.put(UInt8(2))
                writer.put(cid)
                writer.put(hadConnections)
            case let .balloon(target, actual):
                writer.put(UInt8(3))
                writer.put(target)
                writer.put(actual)
            }
            writer.put(device.transport)
        }
        return StateEnvelope.seal(writer.bytes, magic: Self.magic, version: Self.formatVersion)
    }

    /// Reads `bytes` back: refused with one line unless the frame, the version, the checksum and
    /// every field check out.
    public init(decoding bytes: [UInt8]) throws(MachineSnapshotError) {
        let payload: [UInt8]
        do throws(StateEnvelopeError) {
            payload = try StateEnvelope.open(bytes, magic: Self.magic, version: Self.formatVersion)
        } catch {
            throw .unreadable(error.description)
        }
        var reader = StateReader(payload)
        do throws(StateDecodingError) {
            memoryMiB = Int(try reader.read(UInt32.self, "memory size"))
            let regionCount = Int(try reader.read(UInt32.self, "memory regions"))
            guard regionCount <= Self.maxRegions else {
                throw .tooMany(what: "memory regions", count: UInt64(regionCount), limit: Self.maxRegions)
            }
            regions = []
            for _ in 0..<regionCount {
                let base = GuestAddress(try reader.read(UInt64.self, "memory region base"))
                let rawSize = try reader.read(UInt64.self, "memory region size")
                guard let size = Int(exactly: rawSize) else { throw .invalid(what: "memory region size", detail: "\(rawSize)") }
                regions.append(SavedRegion(base: base, size: size))
            }
            let cpuidCount = Int(try reader.read(UInt32.self, "supported CPUID"))
            guard cpuidCount <= VCPUState.maxCPUIDEntries else {
                throw .tooMany(what: "supported CPUID", count: UInt64(cpuidCount), limit: VCPUState.maxCPUIDEntries)
            }
            supportedCPUID = []
            for _ in 0..<cpuidCount { supportedCPUID.append(try reader.readABI(kvm_cpuid_entry2.self, "supported CPUID entry")) }
            xsaveSize = Int(try reader.read(UInt32.self, "XSAVE size"))
            vcpus = try reader.readArray(VCPUState.self, "vCPUs", limit: VMConfiguration.maxVCPUs)
            vm = try reader.read(VirtualMachineState.self)
            serial = try reader.read(SerialState.self)
            let deviceCount = Int(try reader.read(UInt32.self, "virtio devices"))
            guard deviceCount <= Self.maxVirtioDevices else {
                throw .tooMany(what: "virtio devices", count: UInt64(deviceCount), limit: Self.maxVirtioDevices)
            }
            virtio = []
            for _ in 0..<deviceCount {
                let kind: SavedVirtioDevice.Kind
                switch try reader.read(UInt8.self, "virtio device kind") {
                case 1:
                    kind = .block(readOnly: try reader.readBool("disk read-only"), capacity: try reader.read(UInt64.self, "disk capacity"))
                case 2:
                    kind = .vsock(
                        guestCID: try reader.read(UInt32.self, "vsock CID"), hadConnections: try reader.readBool("vsock connections"))
                case 3:
                    kind = .balloon(
                        target: try reader.read(UInt32.self, "balloon target"), actual: try reader.read(UInt32.self, "balloon actual"))
                case let other: throw .invalid(what: "virtio device kind", detail: "\(other)")
                }
                virtio.append(SavedVirtioDevice(kind: kind, transport: try reader.read(VirtioTransportState.self)))
            }
            try reader.finish("the machine snapshot")
        } catch {
            throw .unreadable(error.description)
        }
    }
}

// MARK: checks before a restore

extension MachineSnapshot {
    /// Everything that can be checked before a VM exists: the snapshot fits `configuration`
    /// (vCPUs, memory layout, devices) and this host's KVM (CPUID, XSAVE layout), so that a
    /// restore refused for any of these creates nothing.
    func check(against configuration: VMConfiguration, kvm: KVMSystem) throws(MachineSnapshotError) {
        guard vcpus.count == configuration.vcpuCount else {
            throw .mismatch("it has \(vcpus.count) vCPUs, the VM asked for has \(configuration.vcpuCount)")
        }
        guard memoryMiB == configuration.memoryMiB else {
            throw .mismatch("it has \(memoryMiB) MiB of memory, the VM asked for has \(configuration.memoryMiB) MiB")
        }
        let layout = X86Layout.ramRegions(memoryBytes: memoryMiB << 20).map { SavedRegion(base: $0.base, size: $0.size) }
        guard regions == layout else { throw .mismatch("its memory layout is not rund's for \(memoryMiB) MiB") }
        guard configuration.pmemImages.isEmpty, configuration.network == nil else {
            throw .mismatch("it has no pmem or network devices, the VM asked for has")
        }
        let expected =
            configuration.disks.map { SavedVirtioDevice.Kind.block(readOnly: $0.readOnly, capacity: 0) }
            + (configuration.vsockGuestCID.map { [SavedVirtioDevice.Kind.vsock(guestCID: $0, hadConnections: false)] } ?? [])
            + (configuration.balloon ? [SavedVirtioDevice.Kind.balloon(target: 0, actual: 0)] : [])
        guard virtio.count == expected.count else {
            throw .mismatch("it has \(virtio.count) virtio devices, the VM asked for has \(expected.count)")
        }
        for (index, (saved, wanted)) in zip(virtio, expected).enumerated() {
            switch (saved.kind, wanted) {
            case let (.block(savedReadOnly, _), .block(readOnly, _)):
                guard savedReadOnly == readOnly else {
                    throw .mismatch(
                        "its disk \(index) is \(savedReadOnly ? "read-only" : "writable"), the VM's is \(readOnly ? "read-only" : "writable")"
                    )
                }
            case (.vsock, .vsock):
                break  // A clone may have another CID: the transport reset makes the guest reread it.
            case (.balloon, .balloon):
                break  // Its target is checked against the memory when restored.
            default:
                throw .mismatch("its virtio device \(index) is a \(saved.kind.name), the VM's is a \(wanted.name)")
            }
        }
        let hostXSAVE = kvm.xsaveSize()
        guard xsaveSize == hostXSAVE, vcpus.allSatisfy({ $0.xsave.count == hostXSAVE }) else {
            throw .mismatch("its XSAVE areas are \(xsaveSize) bytes, this host's \(hostXSAVE)")
        }
        let hostCPUID: [kvm_cpuid_entry2]
        do {
            hostCPUID = try kvm.supportedCPUID()
        } catch {
            throw .mismatch("this host's CPUID cannot be read: \(error)")
        }
        if let leaf = Self.firstCPUIDDifference(hostCPUID, supportedCPUID) {
            throw .mismatch("it was made where KVM offered other CPU features than this host's (CPUID \(leaf))")
        }
    }

    /// `entry`'s flags and registers without what KVM_GET_SUPPORTED_CPUID reports of the host
    /// CPU the call ran on (APIC ids): the same host answers differently from each of its CPUs,
    /// and the vCPUs get their own ids anyway (`CPUIDNormalizer`).
    static func perCPUFieldsCleared(_ entry: kvm_cpuid_entry2) -> [UInt32] {
        var (eax, ebx, ecx, edx) = (entry.eax, entry.ebx, entry.ecx, entry.edx)
        switch entry.function {
        case 0x1: ebx &= 0x00ff_ffff  // Initial APIC id in bits 31:24.
        case 0xb, 0x1f: edx = 0  // x2APIC id.
        case 0x8000_001e: (eax, ebx, ecx) = (0, 0, 0)  // Extended APIC, core and node ids.
        default: break
        }
        return [entry.flags, eax, ebx, ecx, edx]
    }

    /// The first CPUID leaf where `a` and `b` differ ("0xLEAF.INDEX: A vs B"), or nil.
    static func firstCPUIDDifference(_ a: [kvm_cpuid_entry2], _ b: [kvm_cpuid_entry2]) -> String? {
        func table(_ entries: [kvm_cpuid_entry2]) -> [[UInt32]: [UInt32]] {
            var table: [[UInt32]: [UInt32]] = [:]
            for entry in entries { table[[entry.function, entry.index]] = perCPUFieldsCleared(entry) }
            return table
        }
        let (first, second) = (table(a), table(b))
        let keys = Set(first.keys).union(second.keys).sorted { $0.lexicographicallyPrecedes($1) }
        guard let key = keys.first(where: { first[$0] != second[$0] }) else { return nil }
        func hex(_ words: [UInt32]?) -> String { words.map { $0.map { String($0, radix: 16) }.joined(separator: ",") } ?? "absent" }
        return "0x\(String(key[0], radix: 16)).\(key[1]): \(hex(first[key])) here, \(hex(second[key])) saved"
    }
}

extension MachineSnapshot.SavedVirtioDevice.Kind {
    var name: String {
        switch self {
        case .block: return "disk"
        case .vsock: return "vsock device"
        case .balloon: return "balloon"
        }
    }
}

/// Why a snapshot could not be taken or resumed, in one line.
public enum MachineSnapshotError: Error, CustomStringConvertible, Sendable, Equatable {
    /// The bytes are not a snapshot this rund reads (wrong kind, version, checksum or contents).
    case unreadable(String)
    /// A sound snapshot that does not fit the VM asked for or this host.
    case mismatch(String)
    /// Taking or putting back the state failed.
    case failed(String)

    public var description: String {
        switch self {
        case .unreadable(let reason): return "the machine snapshot cannot be read: \(reason)"
        case .mismatch(let reason): return "the machine snapshot does not fit: \(reason)"
        case .failed(let reason): return reason
        }
    }
}
