import GuestMemory

/// Identity-mapped page tables for entering the kernel in long mode: [0, 4 GiB) with 2 MiB pages.
public enum BootPageTables {
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let largePage: UInt64 = 1 << 7
    static let entriesPerTable = 512
    static let largePageSize: UInt64 = 2 << 20

    /// Guest physical address of the page directory covering GiB `index`.
    static func pageDirectoryAddress(_ index: Int) throws(GuestMemoryError) -> GuestAddress {
        try X86Layout.pageDirectoryAddress.adding(UInt64(index) * 0x1000)
    }

    static func write(into memory: GuestMemory) throws(GuestMemoryError) {
        let tableFlags = present | writable
        try memory.zero(at: X86Layout.pml4Address, length: 0x1000)
        try memory.zero(at: X86Layout.pdptAddress, length: 0x1000)
        // Table entries hold physical addresses as plain 64-bit values (with flag bits).
        try memory.store(X86Layout.pdptAddress.rawValue | tableFlags, at: X86Layout.pml4Address)
        for gib in 0..<X86Layout.identityMappedGiB {
            let directory = try pageDirectoryAddress(gib)
            try memory.store(directory.rawValue | tableFlags, at: try X86Layout.pdptAddress.adding(UInt64(gib * 8)))
            for i in 0..<entriesPerTable {
                let frame = UInt64(gib * entriesPerTable + i) * largePageSize
                try memory.store(frame | tableFlags | largePage, at: try directory.adding(UInt64(i * 8)))
            }
        }
    }
}
