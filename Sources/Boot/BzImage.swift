import GuestMemory

/// A parsed x86 bzImage: the real-mode setup header and where the protected-mode kernel starts.
/// Only the 64-bit boot protocol (2.12+, XLF_KERNEL_64) is accepted.
public struct BzImage: Sendable {
    /// The setup header bytes as found in the file, from 0x1f1; copied verbatim into the zero page.
    public let setupHeader: [UInt8]
    public let protocolVersion: UInt16
    /// Number of 512-byte setup sectors (0 in the file means 4).
    public let setupSectors: Int
    public let loadFlags: UInt8
    public let xloadFlags: UInt16
    /// Highest address the initrd may occupy.
    public let initrdAddressMax: UInt32
    public let kernelAlignment: UInt32
    public let isRelocatable: Bool
    /// Longest command line the kernel accepts, excluding the NUL.
    public let commandLineMax: Int
    /// Where a non-relocating decompressor puts the kernel (LOAD_PHYSICAL_ADDR).
    public let preferredAddress: UInt64
    /// Bytes the kernel needs from its load address while it decompresses and initialises.
    public let initSize: UInt32
    /// File offset of the protected-mode kernel: (setup_sects + 1) * 512.
    public let protectedModeOffset: Int
    /// The protected-mode kernel, loaded at `X86Layout.himemStart`.
    public let protectedModeKernel: ArraySlice<UInt8>

    public init(_ bytes: [UInt8]) throws(BootError) {
        guard bytes.count >= SetupHeader.endV212 else {
            throw .kernelTruncated(size: bytes.count, expected: SetupHeader.endV212)
        }
        guard bytes.littleEndian(UInt16.self, at: SetupHeader.bootFlag) == SetupHeader.bootFlagValue else {
            throw .notBzImage(reason: "no boot flag 0xAA55 at offset 0x1fe")
        }
        guard bytes.littleEndian(UInt32.self, at: SetupHeader.header) == SetupHeader.magic else {
            throw .notBzImage(reason: "no \"HdrS\" signature at offset 0x202")
        }
        let version = bytes.littleEndian(UInt16.self, at: SetupHeader.version)
        guard version >= SetupHeader.minimumVersion else { throw .unsupportedBootProtocol(version: version) }
        let loadFlags = bytes[SetupHeader.loadflags]
        guard loadFlags & SetupHeader.loadedHigh != 0 else {
            throw .notBzImage(reason: "zImage loads below 1 MiB (LOADED_HIGH not set)")
        }
        let xloadFlags = bytes.littleEndian(UInt16.self, at: SetupHeader.xloadflags)
        guard xloadFlags & SetupHeader.xlfKernel64 != 0 else { throw .kernelNot64Bit }

        let sectors = bytes[SetupHeader.setupSects] == 0 ? 4 : Int(bytes[SetupHeader.setupSects])
        let offset = (sectors + 1) * 512
        // syssize counts 16-byte paragraphs; allow one paragraph of rounding slack.
        let paragraphs = Int(bytes.littleEndian(UInt32.self, at: SetupHeader.syssize))
        guard paragraphs > 0 else { throw .notBzImage(reason: "syssize is 0") }
        let expected = offset + paragraphs * 16 - 15
        guard bytes.count >= expected, bytes.count > offset else {
            throw .kernelTruncated(size: bytes.count, expected: max(expected, offset + 1))
        }

        // The header's own length: 0x202 + the jump instruction's displacement byte.
        let headerEnd = min(
            max(SetupHeader.header + Int(bytes[SetupHeader.jump + 1]), SetupHeader.endV212),
            SetupHeader.zeroPageLimit, offset)
        self.setupHeader = Array(bytes[SetupHeader.start..<headerEnd])
        self.protocolVersion = version
        self.setupSectors = sectors
        self.loadFlags = loadFlags
        self.xloadFlags = xloadFlags
        self.initrdAddressMax = bytes.littleEndian(UInt32.self, at: SetupHeader.initrdAddrMax)
        self.kernelAlignment = bytes.littleEndian(UInt32.self, at: SetupHeader.kernelAlignment)
        self.isRelocatable = bytes[SetupHeader.relocatableKernel] != 0
        self.commandLineMax = Int(bytes.littleEndian(UInt32.self, at: SetupHeader.cmdlineSize))
        self.preferredAddress = bytes.littleEndian(UInt64.self, at: SetupHeader.prefAddress)
        self.initSize = bytes.littleEndian(UInt32.self, at: SetupHeader.initSize)
        self.protectedModeOffset = offset
        self.protectedModeKernel = bytes[offset...]
    }

    /// Lowest address past everything the kernel may touch while it starts: the decompressor
    /// works at max(load address, pref_address) for init_size bytes.
    public var requiredMemoryEnd: UInt64 {
        let base = max(X86Layout.himemStart.rawValue, preferredAddress)
        // A hostile header may put pref_address anywhere: saturate rather than overflow.
        let (end, overflow) = base.addingReportingOverflow(max(UInt64(initSize), UInt64(protectedModeKernel.count)))
        return overflow ? .max : end
    }
}
