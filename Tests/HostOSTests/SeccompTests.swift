#if canImport(Glibc)
import Glibc
#endif
import CLinux
import Foundation
import HostOS
import Synchronization
import Testing

/// Real seccomp filters on real threads of this test process: each test confines a thread of
/// its own, makes calls from it, and watches what the kernel does.
@Suite struct SeccompTests {
    /// Runs `body` on a new thread confined by `filter`; returns what `body` returned (nil if a
    /// call was trapped) and the violation reported, if any.
    private func confined(
        _ filter: SeccompFilter, _ body: @escaping @Sendable () -> Int
    ) throws -> (result: Int?, violation: SeccompViolation?) {
        let result = Mutex<Int?>(nil)
        let violation = Mutex<SeccompViolation?>(nil)
        let reported = try EventFD()
        let setup = Mutex<(any Error)?>(nil)
        let thread = try OSThread.spawn(name: "seccomp-test") {
            do {
                try filter.applyToCurrentThread { found in
                    violation.withLock { $0 = found }
                    try? reported.signal()
                }
            } catch {
                setup.withLock { $0 = error }
                return
            }
            let value = body()
            // A trapped thread reports it (and ends here, as every confined thread must).
            result.withLock { $0 = SeccompFilter.currentThreadWasTrapped ? nil : value }
            SeccompFilter.threadEnding()
        }
        thread.join()
        if let error = setup.withLock({ $0 }) { throw error }
        // The report comes from the reader thread; a thread that ran to its end reports nothing.
        if result.withLock({ $0 }) == nil { _ = try reported.descriptor.waitReadable(milliseconds: 30000) }
        return (result.withLock { $0 }, violation.withLock { $0 })
    }

    private static func getrandom(count: Int) -> Int {
        var buffer = [UInt8](repeating: 0, count: count)
        return buffer.withUnsafeMutableBytes { rund_syscall3(Int(SYS_getrandom), Int(bitPattern: $0.baseAddress), count, 0) }
    }

    private let essentials = SeccompFilter(name: "test", allowing: SeccompFilter.threadEssentials)

    @Test func allowedCallsRunAndTheThreadShowsSeccompFiltering() throws {
        // The confined thread files its id, then waits (read is allowed) while this thread
        // reads its status from /proc.
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let (waitEnd, wakeEnd) = (fds[0], fds[1])
        let tid = Mutex<Int32>(0)
        let status = Mutex("")
        let reader = try OSThread.spawn(name: "status-reader") {
            while tid.withLock({ $0 }) == 0 { usleep(1000) }
            let text = (try? FileDescriptor.open("/proc/self/task/\(tid.withLock { $0 })/status", O_RDONLY).readToEnd(limit: 1 << 16)) ?? []
            status.withLock { $0 = String(decoding: text, as: UTF8.self) }
            var byte: UInt8 = 1
            _ = write(wakeEnd, &byte, 1)
        }
        let outcome = try confined(essentials) {
            tid.withLock { $0 = Int32(truncatingIfNeeded: rund_gettid()) }
            var byte: UInt8 = 0
            _ = read(waitEnd, &byte, 1)
            return Self.getrandom(count: 16)  // allowed: returns the count
        }
        reader.join()
        #expect(outcome.result == 16)
        #expect(outcome.violation == nil)
        #expect(status.withLock { $0 }.contains("Seccomp:\t2"), "status: \(status.withLock { $0 })")
    }

    @Test func aForbiddenCallFailsMarksTheThreadAndIsReportedByName() throws {
        let failedWith = Mutex<(Int, Int32)>((0, 0))
        let outcome = try confined(essentials) {
            let result = Int(rund_seccomp_forbidden_call())
            failedWith.withLock { $0 = (result, errno) }
            return result
        }
        // The call never ran: it failed with ENOSYS, and the thread knows it was trapped.
        #expect(failedWith.withLock { $0 } == (-1, ENOSYS))
        #expect(outcome.result == nil, "the trap was not noticed")
        let violation = try #require(outcome.violation)
        #expect(violation.systemCall == Int32(SYS_socket))
        #expect(violation.filter == "test")
        #expect(violation.description.contains("socket"))
        // The process is fine: this thread is not confined and can still make the call.
        let fd = rund_seccomp_forbidden_call()
        #expect(fd >= 0)
        if fd >= 0 { close(Int32(fd)) }
    }

    @Test func ioctlIsAllowedByRequestNumberOnly() throws {
        let filter = SeccompFilter(name: "ioctl", allowing: SeccompFilter.threadEssentials, ioctlRequests: [UInt32(TCGETS)])
        // An allowed request reaches the kernel (ENOTTY on a pipe is the kernel's own answer).
        var fds: [Int32] = [0, 0]
        #expect(pipe(&fds) == 0)
        defer { close(fds[0]); close(fds[1]) }
        let pipeEnd = fds[0]
        let allowed = try confined(filter) {
            var attributes = termios()
            return rund_ioctl_ptr(pipeEnd, UInt(TCGETS), &attributes) < 0 && errno == ENOTTY ? 0 : -1
        }
        #expect(allowed.result == 0)
        #expect(allowed.violation == nil)
        let refused = try confined(filter) {
            var size = winsize()
            return Int(rund_ioctl_ptr(0, UInt(TIOCGWINSZ), &size))
        }
        #expect(refused.result == nil)
        #expect(refused.violation?.systemCall == Int32(SYS_ioctl))
    }

    @Test func callsThroughTheX32ABIAreRefused() throws {
        // getpid is allowed, but not under its x32 number (bit 30 set).
        let outcome = try confined(essentials) { rund_syscall3(0x4000_0000 | Int(SYS_getpid), 0, 0, 0) }
        #expect(outcome.result == nil)
        #expect(outcome.violation != nil)
    }

    @Test func allowedListAtTheEdgesOfTheJumpTable() throws {
        // The first and the last allowed call (sorted) both get through: the jumps land on ALLOW.
        let calls = SeccompFilter.threadEssentials.sorted()
        let filter = SeccompFilter(name: "edges", allowing: Set(calls), ioctlRequests: [1, 2, 3])
        let outcome = try confined(filter) {
            var buffer = [UInt8](repeating: 0, count: 4)
            let read = Glibc.read(-1, &buffer, 4)  // SYS_read (0) is the lowest number: EBADF
            let random = Self.getrandom(count: 4)  // SYS_getrandom is among the highest
            return read == -1 && random == 4 ? 0 : -1
        }
        #expect(outcome.result == 0)
        #expect(outcome.violation == nil)
    }
}

/// PR_SET_DUMPABLE 0 is process-wide, so it is tried in a child process (this test bundle,
/// filtered to the child suite), which reports what the kernel says afterwards.
@Suite struct ProcessHardeningTests {
    @Test func aProcessMadeUndumpableStaysSo() throws {
        let environment = ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" } + ["RUND_TEST_UNDUMPABLE_CHILD=1"]
        let child = try Subprocess.run(
            [
                CommandLine.arguments[0], "--testing-library", "swift-testing",
                "--filter", "UndumpableChildProcess",
            ], environment: environment)
        #expect(child.status == 0, "\(child.stdoutText.suffix(1000))")
        #expect(child.stdoutText.contains("undumpable-child: before=true after=false"), "\(child.stdoutText.suffix(1000))")
    }
}

@Suite(
    .enabled(
        if: ProcessInfo.processInfo.environment["RUND_TEST_UNDUMPABLE_CHILD"] != nil, "run by ProcessHardeningTests in a child process"))
struct UndumpableChildProcess {
    @Test func makeUndumpable() throws {
        let before = ProcessHardening.isDumpable
        try ProcessHardening.makeUndumpable()
        print("undumpable-child: before=\(before) after=\(ProcessHardening.isDumpable)")
    }
}
