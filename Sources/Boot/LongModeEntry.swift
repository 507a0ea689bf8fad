import GuestMemory

/// Entry for freestanding guests (flat binaries, used by tests): the same GDT, page tables and
/// long-mode CPU state a Linux boot gets, with `rip` at the binary's load address.
public enum LongModeEntry {
    public static func prepare(memory: GuestMemory, loading binary: [UInt8], at address: UInt64) throws(BootError) -> BootCPUState {
        do throws(GuestMemoryError) {
            try memory.write(binary, at: address)
            try BootGDT.write(into: memory)
            try BootPageTables.write(into: memory)
        } catch {
            throw .guestMemory(error)
        }
        return LinuxBoot.bootCPUState(entry: address)
    }
}
