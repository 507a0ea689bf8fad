@testable import Boot

/// Builds a minimal bzImage: the setup header fields the loader reads, then a protected-mode
/// part filled with a recognisable pattern. Real kernels are exercised in `RealKernelTests`.
struct SyntheticKernel {
    var setupSects: UInt8 = 4
    var version: UInt16 = 0x020f
    var loadFlags: UInt8 = 0x01
    var xloadFlags: UInt16 = 0x7f
    var initrdAddrMax: UInt32 = 0x7fff_ffff
    var kernelAlignment: UInt32 = 0x20_0000
    var relocatable: UInt8 = 1
    var cmdlineSize: UInt32 = 2047
    var prefAddress: UInt64 = 0x100_0000
    var initSize: UInt32 = 0x80_0000
    var protectedModeSize = 64 * 1024
    var bootFlag: UInt16 = 0xaa55
    var magic: [UInt8] = Array("HdrS".utf8)

    var setupOffset: Int { (Int(setupSects == 0 ? 4 : setupSects) + 1) * 512 }

    /// Byte i of the protected-mode kernel.
    static func pattern(_ i: Int) -> UInt8 { UInt8(truncatingIfNeeded: i &* 31 &+ 7) }

    var bytes: [UInt8] {
        var b = [UInt8](repeating: 0xcc, count: setupOffset)
        // The zero page's bytes outside the header must never come from the file.
        b.putLittleEndian(UInt8(0x5a), at: 0x1ef)
        b[0x1f1] = setupSects
        b.putLittleEndian(UInt16(0x1234), at: 0x1f2)  // root_flags
        b.putLittleEndian(UInt32((protectedModeSize + 15) / 16), at: 0x1f4)
        b.putLittleEndian(bootFlag, at: 0x1fe)
        b[0x200] = 0xeb
        b[0x201] = 0x6a  // header ends at 0x26c
        b.replaceSubrange(0x202..<0x206, with: magic)
        b.putLittleEndian(version, at: 0x206)
        b[0x210] = 0  // type_of_loader
        b[0x211] = loadFlags
        b.putLittleEndian(UInt32(0x10_0000), at: 0x214)  // code32_start
        b.putLittleEndian(UInt32(0), at: 0x218)
        b.putLittleEndian(UInt32(0), at: 0x21c)
        b.putLittleEndian(UInt32(0), at: 0x228)
        b.putLittleEndian(initrdAddrMax, at: 0x22c)
        b.putLittleEndian(kernelAlignment, at: 0x230)
        b[0x234] = relocatable
        b[0x235] = 21
        b.putLittleEndian(xloadFlags, at: 0x236)
        b.putLittleEndian(cmdlineSize, at: 0x238)
        b.putLittleEndian(UInt32(0), at: 0x23c)
        b.putLittleEndian(UInt64(0), at: 0x240)
        b.putLittleEndian(UInt32(0x3c5), at: 0x248)  // payload_offset
        b.putLittleEndian(UInt32(0x1000), at: 0x24c)
        b.putLittleEndian(UInt64(0), at: 0x250)
        b.putLittleEndian(prefAddress, at: 0x258)
        b.putLittleEndian(initSize, at: 0x260)
        b.putLittleEndian(UInt32(0x190), at: 0x264)
        b.putLittleEndian(UInt32(0x1234), at: 0x268)
        b += (0..<protectedModeSize).map(SyntheticKernel.pattern)
        return b
    }
}
