import GuestMemory

/// Identity-mapped page tables for entering the kernel in long mode: [0, 4 GiB) with 2 MiB pages.
public enum BootPageTables {
    static let present: UInt64 = 1 << 0
    static let writable: UInt64 = 1 << 1
    static let largePage: UInt64 = 1 << 7
    static let entriesPerTable = 512
    static let largePageSize: UInt64 = 2 << 20

    /// Guest physical address of the page directory covering GiB `index`.
    static func pageDirectoryAddress(_ index: Int) -> UInt64 {
        X86Layout.pageDirectoryAddress + UInt64(index) * 0x1000
    }

    static func write(into memory: GuestMemory) throws(GuestMemoryError) {
        let tableFlags = present | writable
        try memory.zero(at: X86Layout.pml4Address, length: 0x1000)
        try memory.zero(at: X86Layout.pdptAddress, length: 0x1000)
        try memory.store(X86Layout.pdptAddress | tableFlags, at: X86Layout.pml4Address)
        for gib in 0..<X86Layout.identityMappedGiB {
            let directory = pageDirectoryAddress(gib)
            try memory.store(directory | tableFlags, at: X86Layout.pdptAddress + UInt64(gib * 8))
            for i in 0..<entriesPerTable {
                let frame = UInt64(gib * entriesPerTable + i) * largePageSize
                try memory.store(frame | tableFlags | largePage, at: directory + UInt64(i * 8))
            }
        }
    }
}
