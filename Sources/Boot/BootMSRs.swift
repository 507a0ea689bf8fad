/// Model-specific registers set on every vCPU before boot (after `KVM_SET_CPUID2`, because
/// CPUID-dependent MSRs read as 0 before it).
public enum BootMSRs {
    static let sysenterCS: UInt32 = 0x174
    static let sysenterESP: UInt32 = 0x175
    static let sysenterEIP: UInt32 = 0x176
    static let star: UInt32 = 0xc000_0081
    static let lstar: UInt32 = 0xc000_0082
    static let cstar: UInt32 = 0xc000_0083
    static let syscallMask: UInt32 = 0xc000_0084
    static let kernelGSBase: UInt32 = 0xc000_0102
    static let tsc: UInt32 = 0x10
    static let miscEnable: UInt32 = 0x1a0
    static let mtrrDefType: UInt32 = 0x2ff

    /// `MISC_ENABLE.FAST_STRING`: rep movs/stos may use fast-string operation.
    static let fastStrings: UInt64 = 1 << 0
    /// MTRRs enabled (bit 11) with write-back (6) as the default memory type.
    static let mtrrEnabledWriteBack: UInt64 = (1 << 11) | 6

    public static let entries: [(index: UInt32, value: UInt64)] = [
        (sysenterCS, 0), (sysenterESP, 0), (sysenterEIP, 0),
        (star, 0), (cstar, 0), (kernelGSBase, 0), (syscallMask, 0), (lstar, 0),
        (tsc, 0),
        (miscEnable, fastStrings),
        (mtrrDefType, mtrrEnabledWriteBack),
    ]
}

/// x87/SSE state for `KVM_SET_FPU` at boot: the values FNINIT and a processor reset leave.
public enum FPUBootState {
    /// x87 control word: all exceptions masked, 64-bit precision, round to nearest.
    public static let fcw: UInt16 = 0x37f
    /// SSE control/status: all exceptions masked, round to nearest.
    public static let mxcsr: UInt32 = 0x1f80
}
