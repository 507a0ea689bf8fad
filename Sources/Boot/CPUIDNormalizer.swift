/// Turns `KVM_GET_SUPPORTED_CPUID` into what one vCPU of an N-vCPU guest should see: a single
/// package of N single-threaded cores, APIC id = vCPU index, the hypervisor bit set, and the
/// host's vendor kept (so the guest picks the matching code paths).
public enum CPUIDNormalizer {
    public enum Vendor: Equatable, Sendable {
        case intel, amd, other
    }

    enum Leaf {
        static let vendor: UInt32 = 0x0
        static let features: UInt32 = 0x1
        static let cacheParameters: UInt32 = 0x4
        static let extendedTopology: UInt32 = 0xb
        static let extendedTopologyV2: UInt32 = 0x1f
        static let extendedFeatures: UInt32 = 0x8000_0001
        static let addressSizes: UInt32 = 0x8000_0008
        static let amdCacheTopology: UInt32 = 0x8000_001d
        static let amdProcessorTopology: UInt32 = 0x8000_001e
    }

    enum Bit {
        static let pdcm: UInt32 = 1 << 15  // leaf 1 ECX: perfmon/debug MSR; not emulated
        static let tscDeadline: UInt32 = 1 << 24  // leaf 1 ECX: KVM's LAPIC emulates it
        static let hypervisor: UInt32 = 1 << 31  // leaf 1 ECX
        static let htt: UInt32 = 1 << 28  // leaf 1 EDX: more than one logical CPU
        static let cmpLegacy: UInt32 = 1 << 1  // 0x80000001 ECX (AMD)
        static let topologyExtensions: UInt32 = 1 << 22  // 0x80000001 ECX (AMD)
    }

    /// Topology level types of leaves 0xB/0x1F (ECX[15:8]).
    enum LevelType {
        static let smt: UInt32 = 1
        static let core: UInt32 = 2
    }

    /// CLFLUSH line size in 8-byte units (64 bytes).
    static let clflushLineSize: UInt32 = 8

    public static func vendor(of entries: [CPUIDEntry]) -> Vendor {
        guard let leaf0 = entries.first(where: { $0.function == Leaf.vendor }) else { return .other }
        switch (leaf0.ebx, leaf0.edx, leaf0.ecx) {
        case (0x756e_6547, 0x4965_6e69, 0x6c65_746e): return .intel  // "GenuineIntel"
        case (0x6874_7541, 0x6974_6e65, 0x444d_4163): return .amd  // "AuthenticAMD"
        case (0x6f67_7948, 0x6e65_476e, 0x656e_6975): return .amd  // "HygonGenuine"
        default: return .other
        }
    }

    public static func normalize(_ supported: [CPUIDEntry], vcpuIndex: Int, vcpuCount: Int) -> [CPUIDEntry] {
        let topology = Topology(vcpuIndex: vcpuIndex, vcpuCount: vcpuCount)
        let vendor = vendor(of: supported)
        let hasAMDTopology = supported.contains { $0.function == Leaf.amdProcessorTopology }
        return supported.map { entry in
            var e = entry
            switch (e.function, vendor) {
            case (Leaf.features, _):
                normalizeFeatures(&e, topology)
            case (Leaf.cacheParameters, .intel) where e.eax & 0x1f != 0:
                e.eax = cacheSharing(e.eax, topology) & 0x3ff_ffff | (min(topology.countCeiling, 64) - 1) << 26
            case (Leaf.extendedTopology, _), (Leaf.extendedTopologyV2, _):
                normalizeExtendedTopology(&e, topology)
            case (Leaf.extendedFeatures, .amd):
                e.ecx = topology.count > 1 ? e.ecx | Bit.cmpLegacy : e.ecx & ~Bit.cmpLegacy
                e.ecx = hasAMDTopology ? e.ecx | Bit.topologyExtensions : e.ecx & ~Bit.topologyExtensions
            case (Leaf.addressSizes, .amd):
                // ECX[15:12] APIC id bits per package, ECX[7:0] cores per package - 1.
                e.ecx = (e.ecx & ~0xf0ff) | topology.apicIDBits << 12 | (topology.count - 1)
            case (Leaf.amdCacheTopology, .amd) where e.eax & 0x1f != 0:
                e.eax = cacheSharing(e.eax, topology)
            case (Leaf.amdProcessorTopology, .amd):
                e.eax = topology.apicID  // extended APIC id
                e.ebx = (e.ebx & ~0xffff) | (topology.apicID & 0xff)  // one thread per core, core id
                e.ecx = e.ecx & ~0x7ff  // node 0, one node per package
                e.edx = 0
            default:
                break
            }
            return e
        }
    }

    /// The guest's shape: one package, `count` cores, one thread each.
    struct Topology {
        let apicID: UInt32
        let count: UInt32
        /// `count` rounded up to a power of two: the APIC id space the package spans.
        let countCeiling: UInt32
        let apicIDBits: UInt32

        init(vcpuIndex: Int, vcpuCount: Int) {
            count = UInt32(min(max(vcpuCount, 1), X86Layout.maxVCPUs))
            apicID = UInt32(min(max(vcpuIndex, 0), X86Layout.maxVCPUs - 1))
            var bits: UInt32 = 0
            while (1 << bits) < count { bits += 1 }
            apicIDBits = bits
            countCeiling = 1 << bits
        }
    }

    static func normalizeFeatures(_ e: inout CPUIDEntry, _ t: Topology) {
        let brandIndex = e.ebx & 0xff
        e.ebx = t.apicID << 24 | min(t.countCeiling, 255) << 16 | clflushLineSize << 8 | brandIndex
        e.ecx = (e.ecx | Bit.hypervisor | Bit.tscDeadline) & ~Bit.pdcm
        e.edx = t.count > 1 ? e.edx | Bit.htt : e.edx & ~Bit.htt
    }

    /// Leaf 0xB/0x1F subleaf n: level 0 = SMT (1 thread), level 1 = core (all vCPUs), then invalid.
    static func normalizeExtendedTopology(_ e: inout CPUIDEntry, _ t: Topology) {
        let level = e.index
        switch level {
        case 0:
            e.eax = 0
            e.ebx = 1
            e.ecx = LevelType.smt << 8 | level
        case 1:
            e.eax = t.apicIDBits
            e.ebx = t.count
            e.ecx = LevelType.core << 8 | level
        default:
            e.eax = 0
            e.ebx = 0
            e.ecx = level & 0xff
        }
        e.edx = t.apicID
    }

    /// Cache leaves (4 and 0x8000001d): EAX[25:14] = logical CPUs sharing the cache - 1; L1 and
    /// L2 are per core, L3 is shared by the whole package. Null caches (type 0) are not passed in.
    static func cacheSharing(_ eax: UInt32, _ t: Topology) -> UInt32 {
        let level = (eax >> 5) & 0x7
        let sharing = level >= 3 ? min(t.countCeiling, 4096) - 1 : 0
        return (eax & ~(0xfff << 14)) | sharing << 14
    }
}
