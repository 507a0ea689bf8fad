import Testing
@testable import Boot

@Suite struct CPUIDNormalizerTests {
    static func vendorLeaf(_ name: String) -> CPUIDEntry {
        let b = Array(name.utf8)
        func word(_ i: Int) -> UInt32 { b[i..<(i + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
        return CPUIDEntry(function: 0, eax: 0x1f, ebx: word(0), ecx: word(8), edx: word(4))
    }

    /// A plausible slice of KVM_GET_SUPPORTED_CPUID on an Intel host.
    static let intel: [CPUIDEntry] = [
        vendorLeaf("GenuineIntel"),
        CPUIDEntry(function: 1, eax: 0x806f8, ebx: 0x1234_56aa, ecx: 0x7ffa_f203 & ~(1 << 31), edx: 0x0f8b_fbff & ~(1 << 28)),
        CPUIDEntry(function: 4, index: 0, flags: 1, eax: 0x1c00_4121, ebx: 0x02c0_003f, ecx: 0x3f),
        CPUIDEntry(function: 4, index: 1, flags: 1, eax: 0x1c00_4122),
        CPUIDEntry(function: 4, index: 2, flags: 1, eax: 0x1c00_4143),
        CPUIDEntry(function: 4, index: 3, flags: 1, eax: 0x1c03_c163),
        CPUIDEntry(function: 4, index: 4, flags: 1, eax: 0x1c03_c160),
        CPUIDEntry(function: 0xb, index: 0, flags: 1, eax: 1, ebx: 2, ecx: 0x100, edx: 7),
        CPUIDEntry(function: 0xb, index: 1, flags: 1, eax: 7, ebx: 112, ecx: 0x201, edx: 7),
        CPUIDEntry(function: 0xb, index: 2, flags: 1, eax: 0, ebx: 0, ecx: 2, edx: 7),
        CPUIDEntry(function: 0x4000_0000, eax: 0x4000_0001, ebx: 0x4b4d_564b, ecx: 0x564b_4d56, edx: 0x4d),
        CPUIDEntry(function: 0x8000_0008, eax: 0x3030, ecx: 0),
    ]

    static let amd: [CPUIDEntry] = [
        vendorLeaf("AuthenticAMD"),
        CPUIDEntry(function: 1, eax: 0xa00f11, ebx: 0x0010_0800, ecx: 0x7ef8_3203, edx: 0x178b_fbff),
        CPUIDEntry(function: 0x8000_0001, ecx: 0x7579_03ff & ~(1 << 22) & ~(1 << 1), edx: 0x2fd3_fbff),
        CPUIDEntry(function: 0x8000_0008, eax: 0x3030, ecx: 0x0001_703f),
        CPUIDEntry(function: 0x8000_001d, index: 0, flags: 1, eax: 0x0000_4121),
        CPUIDEntry(function: 0x8000_001d, index: 3, flags: 1, eax: 0x0003_c163),
        CPUIDEntry(function: 0x8000_001e, eax: 9, ebx: 0x0100, ecx: 0x0300),
    ]

    @Test func recognisesVendors() {
        #expect(CPUIDNormalizer.vendor(of: Self.intel) == .intel)
        #expect(CPUIDNormalizer.vendor(of: Self.amd) == .amd)
        #expect(CPUIDNormalizer.vendor(of: [Self.vendorLeaf("HygonGenuine")]) == .amd)
        #expect(CPUIDNormalizer.vendor(of: []) == .other)
    }

    @Test func leafOneCarriesAPICIDCountAndHypervisorBits() {
        let normalized = CPUIDNormalizer.normalize(Self.intel, vcpuIndex: 2, vcpuCount: 3)
        let leaf1 = normalized.first { $0.function == 1 }!
        #expect(leaf1.ebx >> 24 == 2)  // initial APIC id
        #expect((leaf1.ebx >> 16) & 0xff == 4)  // addressable ids: 3 rounded up to 4
        #expect((leaf1.ebx >> 8) & 0xff == 8)  // CLFLUSH 64 bytes
        #expect(leaf1.ebx & 0xff == 0xaa)  // brand index kept
        #expect(leaf1.ecx & (1 << 31) != 0)  // hypervisor
        #expect(leaf1.ecx & (1 << 24) != 0)  // TSC deadline
        #expect(leaf1.ecx & (1 << 15) == 0)  // PDCM
        #expect(leaf1.edx & (1 << 28) != 0)  // HTT
        #expect(leaf1.eax == 0x806f8)

        let single = CPUIDNormalizer.normalize(Self.intel, vcpuIndex: 0, vcpuCount: 1).first { $0.function == 1 }!
        #expect(single.edx & (1 << 28) == 0)
        #expect(single.ebx >> 16 == 0x01)
    }

    @Test func extendedTopologyDescribesOnePackageOfSingleThreadCores() {
        let normalized = CPUIDNormalizer.normalize(Self.intel, vcpuIndex: 5, vcpuCount: 6)
        let leafB = normalized.filter { $0.function == 0xb }
        #expect(leafB.count == 3)
        #expect(leafB[0] == CPUIDEntry(function: 0xb, index: 0, flags: 1, eax: 0, ebx: 1, ecx: 0x100, edx: 5))
        #expect(leafB[1] == CPUIDEntry(function: 0xb, index: 1, flags: 1, eax: 3, ebx: 6, ecx: 0x201, edx: 5))
        #expect(leafB[2] == CPUIDEntry(function: 0xb, index: 2, flags: 1, eax: 0, ebx: 0, ecx: 2, edx: 5))
    }

    @Test func cacheLeavesMatchTheTopology() {
        let normalized = CPUIDNormalizer.normalize(Self.intel, vcpuIndex: 0, vcpuCount: 6)
        let leaf4 = normalized.filter { $0.function == 4 }
        for entry in leaf4.prefix(3) {
            #expect(entry.eax >> 26 == 7)  // cores per package - 1 (8 - 1)
            #expect((entry.eax >> 14) & 0xfff == 0)  // L1/L2 not shared
        }
        #expect((leaf4[3].eax >> 14) & 0xfff == 7)  // L3 shared by the package
        #expect(leaf4[3].eax & 0x3fff == 0x0163)
        #expect(leaf4[4].eax == 0x1c03_c160)  // a null cache entry is left alone
    }

    @Test func amdLeavesAreConsistent() {
        let normalized = CPUIDNormalizer.normalize(Self.amd, vcpuIndex: 3, vcpuCount: 4)
        let ext1 = normalized.first { $0.function == 0x8000_0001 }!
        #expect(ext1.ecx & (1 << 22) != 0)  // topology extensions
        #expect(ext1.ecx & (1 << 1) != 0)  // CmpLegacy
        let sizes = normalized.first { $0.function == 0x8000_0008 }!
        #expect(sizes.ecx & 0xff == 3)
        #expect((sizes.ecx >> 12) & 0xf == 2)
        #expect(sizes.ecx & 0x3_0000 == 0x1_0000)  // PerfTscSize kept
        #expect(sizes.eax == 0x3030)
        let topo = normalized.first { $0.function == 0x8000_001e }!
        #expect(topo.eax == 3)
        #expect(topo.ebx & 0xffff == 3)
        #expect(topo.ecx & 0x7ff == 0)
        let caches = normalized.filter { $0.function == 0x8000_001d }
        #expect((caches[0].eax >> 14) & 0xfff == 0)
        #expect((caches[1].eax >> 14) & 0xfff == 3)
        let leaf1 = normalized.first { $0.function == 1 }!
        #expect(leaf1.ebx >> 24 == 3)
    }

    @Test func leavesItDoesNotOwnPassThrough() {
        let normalized = CPUIDNormalizer.normalize(Self.intel, vcpuIndex: 1, vcpuCount: 2)
        #expect(normalized.count == Self.intel.count)
        #expect(normalized[0] == Self.intel[0])
        #expect(normalized.first { $0.function == 0x4000_0000 } == Self.intel.first { $0.function == 0x4000_0000 })
        #expect(normalized.first { $0.function == 0x8000_0008 } == Self.intel.first { $0.function == 0x8000_0008 })
    }

    @Test func bootMSRsAndFPU() {
        let msrs = Dictionary(uniqueKeysWithValues: BootMSRs.entries.map { ($0.index, $0.value) })
        #expect(msrs.count == 11)
        #expect(msrs[0x1a0] == 1)
        #expect(msrs[0x2ff] == 0x806)
        #expect(msrs[0x10] == 0)
        #expect(msrs[0xc000_0082] == 0)
        #expect(FPUBootState.fcw == 0x37f)
        #expect(FPUBootState.mxcsr == 0x1f80)
    }
}
