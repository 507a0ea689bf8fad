import GuestMemory

/// The flat 64-bit GDT the kernel starts on: NULL, CODE, DATA, TSS.
public enum BootGDT {
    /// Access byte (low 8 bits) and G/DB/L/AVL nibble (bits 15:12) of each descriptor.
    static let codeFlags: UInt16 = 0xa09b  // present, ring 0, execute/read, accessed; G, L
    static let dataFlags: UInt16 = 0xc093  // present, ring 0, read/write, accessed; G, D/B
    static let tssFlags: UInt16 = 0x808b  // present, 64-bit busy TSS; G

    /// Encodes a segment descriptor from flags, a 32-bit base and a 20-bit limit.
    public static func entry(flags: UInt16, base: UInt32, limit: UInt32) -> UInt64 {
        let base = UInt64(base), limit = UInt64(limit), flags = UInt64(flags)
        return ((base & 0xff00_0000) << 32)
            | ((flags & 0xf0ff) << 40)
            | ((limit & 0xf_0000) << 32)
            | ((base & 0xff_ffff) << 16)
            | (limit & 0xffff)
    }

    public static let entries: [UInt64] = [
        0,
        entry(flags: codeFlags, base: 0, limit: 0xfffff),
        entry(flags: dataFlags, base: 0, limit: 0xfffff),
        entry(flags: tssFlags, base: 0, limit: 0xfffff),
    ]

    public static var table: DescriptorTable {
        DescriptorTable(base: X86Layout.gdtAddress.rawValue, limit: UInt16(entries.count * 8 - 1))
    }

    /// One empty 8-byte IDT slot: enough for the kernel until it loads its own.
    public static var interruptTable: DescriptorTable {
        DescriptorTable(base: X86Layout.idtAddress.rawValue, limit: 7)
    }

    static func write(into memory: GuestMemory) throws(GuestMemoryError) {
        for (i, entry) in entries.enumerated() {
            try memory.store(entry, at: try X86Layout.gdtAddress.adding(UInt64(i * 8)))
        }
        try memory.store(UInt64(0), at: X86Layout.idtAddress)
    }
}
