/// One CPUID leaf/subleaf as `struct kvm_cpuid_entry2` carries it.
public struct CPUIDEntry: Equatable, Sendable {
    public var function: UInt32
    public var index: UInt32
    /// `KVM_CPUID_FLAG_*`; bit 0 (`significantIndexFlag`) marks leaves that have subleaves.
    public var flags: UInt32
    public var eax: UInt32
    public var ebx: UInt32
    public var ecx: UInt32
    public var edx: UInt32

    /// `KVM_CPUID_FLAG_SIGNIFCANT_INDEX`.
    public static let significantIndexFlag: UInt32 = 1

    public init(
        function: UInt32, index: UInt32 = 0, flags: UInt32 = 0,
        eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0
    ) {
        self.function = function
        self.index = index
        self.flags = flags
        self.eax = eax
        self.ebx = ebx
        self.ecx = ecx
        self.edx = edx
    }
}
