import GuestMemory

/// Builds the 4 KiB `boot_params` structure ("zero page") of the x86 boot protocol.
/// Offsets from Documentation/arch/x86/zero-page.rst; header fields from boot.rst.
public struct ZeroPage: Sendable {
    public static let size = 4096

    /// Offsets of the `boot_params` fields rund writes outside the setup header.
    enum Offset {
        static let acpiRSDPAddress = 0x070
        static let extRamdiskImage = 0x0c0
        static let extRamdiskSize = 0x0c4
        static let extCmdLinePtr = 0x0c8
        static let e820Entries = 0x1e8
        static let sentinel = 0x1ef
        static let e820Table = 0x2d0
    }

    /// `E820_MAX_ENTRIES_ZEROPAGE`.
    public static let maxE820Entries = 128
    /// `type_of_loader` for a boot loader without an assigned id.
    static let undefinedLoader: UInt8 = 0xff

    public private(set) var bytes = [UInt8](repeating: 0, count: ZeroPage.size)

    /// Starts from the kernel's own setup header, as the boot protocol requires.
    public init(setupHeader: [UInt8]) {
        let count = min(setupHeader.count, SetupHeader.zeroPageLimit - SetupHeader.start)
        bytes.replaceSubrange(SetupHeader.start..<(SetupHeader.start + count), with: setupHeader.prefix(count))
        bytes[SetupHeader.typeOfLoader] = ZeroPage.undefinedLoader
        bytes.putLittleEndian(SetupHeader.bootFlagValue, at: SetupHeader.bootFlag)
        bytes.putLittleEndian(SetupHeader.magic, at: SetupHeader.header)
        // A non-zero sentinel makes the kernel wipe fields it assumes a broken loader left behind.
        bytes[Offset.sentinel] = 0
    }

    public mutating func setCommandLine(address: GuestAddress, size: Int) {
        bytes.putLittleEndian(UInt32(truncatingIfNeeded: address.rawValue), at: SetupHeader.cmdLinePtr)
        bytes.putLittleEndian(UInt32(truncatingIfNeeded: address.rawValue >> 32), at: Offset.extCmdLinePtr)
        bytes.putLittleEndian(UInt32(size), at: SetupHeader.cmdlineSize)
    }

    public mutating func setRamdisk(address: GuestAddress, size: UInt64) {
        bytes.putLittleEndian(UInt32(truncatingIfNeeded: address.rawValue), at: SetupHeader.ramdiskImage)
        bytes.putLittleEndian(UInt32(truncatingIfNeeded: address.rawValue >> 32), at: Offset.extRamdiskImage)
        bytes.putLittleEndian(UInt32(truncatingIfNeeded: size), at: SetupHeader.ramdiskSize)
        bytes.putLittleEndian(UInt32(truncatingIfNeeded: size >> 32), at: Offset.extRamdiskSize)
    }

    public mutating func setACPIRSDP(address: GuestAddress) {
        bytes.putLittleEndian(address.rawValue, at: Offset.acpiRSDPAddress)
    }

    /// Writes the e820 table; entries past the zero page's 128 slots are dropped.
    public mutating func setMemoryMap(_ entries: [E820Entry]) {
        let kept = entries.prefix(ZeroPage.maxE820Entries)
        bytes[Offset.e820Entries] = UInt8(kept.count)
        for (i, entry) in kept.enumerated() {
            let at = Offset.e820Table + i * E820Entry.encodedSize
            bytes.replaceSubrange(at..<(at + E820Entry.encodedSize), with: entry.encoded)
        }
    }
}
