#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import HostOS
import Testing

/// The agent's cache drop. Dropping this host's own caches would stall every test running
/// beside it (a host-wide sync and re-reads of every binary: 50 s in one run), so the drop
/// itself is checked where it runs, in a guest: DensityInRigTests
/// `idle-memory-goes-back-to-the-host` (a sandbox's 40 MiB of page cache leave rund's RSS).
struct PageCacheDropTests {
    @Test func aProcWithoutTheControlIsAnErrorAndNothingIsWritten() throws {
        let directory = "/tmp/rund-cache-drop-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(directory)
        defer { try? FileSystem.removeTree(directory) }
        #expect(throws: SystemError.self) { try PageCacheDrop.run(procRoot: directory) }
        let listing = try FileDescriptor.openDirectory(directory)
        defer { listing.close() }
        #expect(try listing.directoryEntries().isEmpty)
    }
}
