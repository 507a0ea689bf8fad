import Foundation
import HostOS
import Testing

/// `rund vm boot` with bad input: a one-line error naming the problem, exit status 1, and no
/// process left behind. These fail before any guest code runs, so they need no rig.
@Suite struct VMBootInputTests {
    let rund = RigHarness.rundBinary

    func boot(_ arguments: [String]) throws -> Subprocess.Result {
        try Subprocess.run([rund, "vm", "boot"] + arguments)
    }

    func expectOneLineError(_ result: Subprocess.Result, mentioning text: String, sourceLocation: SourceLocation = #_sourceLocation) {
        #expect(result.status == 1, "status \(result.status), stderr: \(result.stderrText)", sourceLocation: sourceLocation)
        let lines = result.stderrText.split(separator: "\n")
        #expect(lines.count == 1, "expected one line, got: \(result.stderrText)", sourceLocation: sourceLocation)
        #expect(result.stderrText.contains(text), "stderr: \(result.stderrText)", sourceLocation: sourceLocation)
    }

    @Test func missingKernel() throws {
        expectOneLineError(try boot(["--kernel", "/nonexistent/vmlinuz"]), mentioning: "cannot read kernel /nonexistent/vmlinuz")
    }

    @Test func corruptKernel() throws {
        let work = try TestDirectory()
        let kernel = work.path + "/garbage"
        try Data((0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7919) }).write(to: URL(fileURLWithPath: kernel))
        expectOneLineError(try boot(["--kernel", kernel]), mentioning: "kernel")
    }

    @Test(.enabled(if: RigHarness.hasCachedKernel, "needs the guest kernel cache: run scripts/setup"))
    func initrdLargerThanMemory() throws {
        let work = try TestDirectory()
        let initrd = work.path + "/initrd"
        try Subprocess.checked(["truncate", "-s", "200M", initrd])
        expectOneLineError(
            try boot(["--kernel", RigHarness.cachedKernel, "--initrd", initrd, "--memory", "64"]),
            mentioning: "initrd")
    }

    @Test func memoryTooSmall() throws {
        expectOneLineError(try boot(["--kernel", "/dev/null", "--memory", "8"]), mentioning: "--memory")
    }

    @Test func tooManyVCPUs() throws {
        expectOneLineError(try boot(["--kernel", "/dev/null", "--vcpus", "0"]), mentioning: "--vcpus")
    }

    @Test(.enabled(if: RigHarness.hasCachedKernel, "needs the guest kernel cache: run scripts/setup"))
    func missingDisk() throws {
        expectOneLineError(
            try boot(["--kernel", RigHarness.cachedKernel, "--disk", "/nonexistent/disk.img"]),
            mentioning: "cannot read disk /nonexistent/disk.img")
    }

    @Test func malformedDiskOption() throws {
        expectOneLineError(try boot(["--kernel", "/dev/null", "--disk", "x.img,bogus"]), mentioning: "--disk")
    }
}

extension RigHarness {
    static var cachedKernel: String { stateRoot + "/kernel/current/vmlinuz" }
    static var hasCachedKernel: Bool { access(cachedKernel, R_OK) == 0 }
}
