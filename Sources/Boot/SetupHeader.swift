/// Offsets of the x86 boot protocol's setup header fields, from the start of the bzImage file.
/// The zero page holds the same header at the same offsets (Documentation/arch/x86/boot.rst).
enum SetupHeader {
    static let start = 0x1f1
    static let setupSects = 0x1f1
    static let syssize = 0x1f4
    static let bootFlag = 0x1fe
    static let jump = 0x200
    static let header = 0x202
    static let version = 0x206
    static let typeOfLoader = 0x210
    static let loadflags = 0x211
    static let ramdiskImage = 0x218
    static let ramdiskSize = 0x21c
    static let cmdLinePtr = 0x228
    static let initrdAddrMax = 0x22c
    static let kernelAlignment = 0x230
    static let relocatableKernel = 0x234
    static let xloadflags = 0x236
    static let cmdlineSize = 0x238
    static let prefAddress = 0x258
    static let initSize = 0x260
    /// End of the header as of protocol 2.12 (handover_offset is the last field).
    static let endV212 = 0x268
    /// The zero page's header area ends where `edd_mbr_sig_buffer` begins.
    static let zeroPageLimit = 0x290

    static let bootFlagValue: UInt16 = 0xaa55
    static let magic: UInt32 = 0x5372_6448  // "HdrS"
    static let loadedHigh: UInt8 = 0x01
    static let xlfKernel64: UInt16 = 0x0001
    static let minimumVersion: UInt16 = 0x020c
    /// The version an ELF kernel's synthesised header claims (its fields are all rund writes).
    static let protocolVersionOfELFBoot: UInt16 = 0x020f
}
