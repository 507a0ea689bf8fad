import Testing
@testable import HostOS

@Suite struct SubprocessTests {
    @Test func capturesOutputAndStatus() throws {
        let result = try Subprocess.run(["sh", "-c", "echo out; echo err >&2; exit 3"])
        #expect(result.status == 3)
        #expect(result.stdoutText == "out\n")
        #expect(result.stderrText == "err\n")
    }

    /// Test threads (like Swift concurrency threads) block signals; children must not inherit that.
    @Test func childrenStartWithACleanSignalMask() throws {
        let result = try Subprocess.run(["sh", "-c", "kill -TERM $$; sleep 5; exit 0"])
        #expect(result.status == 128 + 15)
    }

    @Test func checkedThrowsWithTheLastStderrLine() {
        #expect(throws: Subprocess.Failure.self) { try Subprocess.checked(["sh", "-c", "echo boom >&2; exit 1"]) }
    }

    @Test func systemErrorNamesTheCallAndSubject() {
        #expect(throws: SystemError.self) { _ = try FileDescriptor.open("/nonexistent/rund", 0) }
        let error = SystemError("open", errno: 2, subject: "/x")
        #expect(error.description == "open /x: No such file or directory")
    }
}
