#if canImport(Glibc)
import Glibc
#endif
import HostOS

extension GuestMemory {
    /// Gives the host back the pages of [address, address+length) (page-aligned, inside one
    /// region): the rund process stops holding them. Every guest RAM mapping is private, so the
    /// guest's next read of them sees zeros (anonymous memory) or, in a template's clone, the
    /// template's page again: its own or its template's data, never another VM's.
    public func discard(at address: GuestAddress, length: Int) throws(GuestMemoryError) {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        guard length > 0 else { return }
        guard address.rawValue % UInt64(page) == 0, length % page == 0 else {
            throw .misaligned(address: address, alignment: page)
        }
        let pointer = try writableHostPointer(at: address, length: length)
        // Cannot fail for a whole-page range of a private mapping we made; if it did, the pages
        // simply stay with the process.
        _ = madvise(pointer, length, MADV_DONTNEED)
    }
}
