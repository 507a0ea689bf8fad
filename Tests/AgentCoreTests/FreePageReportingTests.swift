#if canImport(Glibc)
import Glibc
#endif
import AgentCore
import HostOS
import Testing

/// The agent's tuning of free page reporting, on real files standing in for the kernel's
/// parameter (the guest's own is checked in the rig: DensityInRigTests).
struct FreePageReportingTests {
    @Test func writesTheOrderAndToleratesAKernelWithoutPageReporting() throws {
        let directory = "/tmp/rund-page-reporting-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectories(directory)
        defer { try? FileSystem.removeTree(directory) }
        let parameter = directory + "/page_reporting_order"
        let file = try FileDescriptor.open(parameter, O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
        try file.writeAll("9\n")
        #expect(FreePageReporting.configure(parameter: parameter) == nil)
        #expect(try FileDescriptor.open(parameter, O_RDONLY).readToEnd(limit: 64) == Array("\(FreePageReporting.order)\n".utf8))
        // No such parameter: the kernel has no page reporting, nothing to do.
        #expect(FreePageReporting.configure(parameter: directory + "/absent") == nil)
        // A parameter that cannot be written: said, in one line.
        let refused = FreePageReporting.configure(parameter: directory)
        #expect(refused?.hasPrefix(directory + ": ") == true, "\(refused ?? "nil")")
    }
}
