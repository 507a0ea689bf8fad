import Foundation
import HostOS
import Testing
@testable import VMM

/// The stall watchdog and thread confinement, on this host's real KVM with freestanding guests.
@Suite(
    .enabled(if: HostKVM.isUsable, "needs a usable /dev/kvm"),
    .enabled(if: FreestandingGuest.canBuild, "needs gcc and objcopy to build the test guests"))
struct MachineWatchdogTests {
    enum Scenario: Int {
        case bootMarker = 1, silentSpin = 2, idle = 3
    }

    private func machine(_ scenario: Scenario, console: String, configure: (inout VMConfiguration) -> Void = { _ in }) throws -> Machine {
        let binary = try FreestandingGuest.build("vmm_guest.c", defines: ["SCENARIO": "\(scenario.rawValue)"])
        var configuration = VMConfiguration(
            kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000),
            memoryMiB: 64, console: .file(console))
        configure(&configuration)
        return try Machine(configuration: configuration)
    }

    @Test func aGuestStuckWithoutExitsIsEndedWithItsVCPUStateAndConsole() throws {
        let directory = try TemporaryDirectory()
        let machine = try machine(.silentSpin, console: directory.path + "/console") { $0.stallTimeout = .seconds(2) }
        let backstop = Watchdog(seconds: 60) { machine.stop(signal: 9) }
        defer { backstop.cancel() }
        let exit = try machine.run()
        guard case .stalled(let report) = exit else {
            Issue.record("expected a stall, got \(exit)")
            return
        }
        #expect(exit.exitStatus == 5)
        // Where the guest is stuck (its loop is in the flat binary above 1 MiB), and what it said.
        #expect(report.contains("vCPU 0 runnable rip=0x10"), "\(report)")
        #expect(report.contains("cr3="), "\(report)")
        #expect(report.contains("console ends: spinning"), "\(report)")
    }

    @Test func anIdleGuestIsNotTakenForStalled() throws {
        let directory = try TemporaryDirectory()
        let machine = try machine(.idle, console: directory.path + "/console") { $0.stallTimeout = .seconds(2) }
        // Quiet for three times the stall timeout, every vCPU halted: still running, until stopped.
        let stopper = Watchdog(seconds: 7) { machine.stop(signal: 15) }
        defer { stopper.cancel() }
        let exit = try machine.run()
        #expect(exit == .stoppedBySignal(15))
        #expect(try String(contentsOfFile: directory.path + "/console", encoding: .utf8) == "idle\n")
    }

    @Test func vCPUThreadsRunUnderTheirSeccompFilter() throws {
        let directory = try TemporaryDirectory()
        let machine = try machine(.idle, console: directory.path + "/console") { $0.vcpuCount = 2 }
        let statuses = LockedBox<[String]>([])
        // Every vCPU thread of this process (other tests' included) is confined. A thread is named
        // before it confines itself, so another test's machine starting at that moment shows one
        // unconfined for an instant: sample until all are, for up to 30 s (one that never is fails).
        let observer = Watchdog(
            seconds: 30,
            once: {
                let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
                let found = tasks.compactMap { tid -> String? in
                    let comm = (try? String(contentsOfFile: "/proc/self/task/\(tid)/comm", encoding: .utf8)) ?? ""
                    guard comm.hasPrefix("vcpu") else { return nil }
                    let status = (try? String(contentsOfFile: "/proc/self/task/\(tid)/status", encoding: .utf8)) ?? ""
                    return status.split(separator: "\n").first { $0.hasPrefix("Seccomp:") }.map { "\(comm.dropLast()) \($0)" }
                }
                statuses.value = found
                return found.count >= 2 && found.allSatisfy { $0.hasSuffix("Seccomp:\t2") }
            }
        ) { machine.stop(signal: 15) }
        defer { observer.cancel() }
        #expect(try machine.run() == .stoppedBySignal(15))
        let seen = statuses.value
        #expect(seen.count >= 2, "vCPU threads seen: \(seen)")
        #expect(seen.allSatisfy { $0.hasSuffix("Seccomp:\t2") }, "\(seen)")
    }

    @Test func aVCPUThreadThatBreaksItsConfinementEndsTheVMWithTheCall() throws {
        let directory = try TemporaryDirectory()
        let machine = try machine(.bootMarker, console: directory.path + "/console") {
            $0.testHooks = [.forbiddenSystemCallAtBootMarker]
        }
        let backstop = Watchdog(seconds: 60) { machine.stop(signal: 9) }
        defer { backstop.cancel() }
        let exit = try machine.run()
        guard case .confinementBroken(let report) = exit else {
            Issue.record("expected a confinement violation, got \(exit)")
            return
        }
        #expect(exit.exitStatus == 6)
        #expect(report.contains("vCPU thread"), "\(report)")
        #expect(report.contains("socket"), "\(report)")
        // The thread stopped at the trap: the guest never got to say it went on.
        #expect(try String(contentsOfFile: directory.path + "/console", encoding: .utf8).contains("after the marker") == false)
    }

    /// `dd`: out of core dumps; `nh`: never transparent huge pages (GuestRegion.keepSmallPages),
    /// only when the configuration asks for small pages.
    @Test(arguments: [false, true]) func guestMemoryIsLeftOutOfCoreDumpsAndInSmallPagesWhenAsked(smallPages: Bool) throws {
        let directory = try TemporaryDirectory()
        let machine = try machine(.idle, console: directory.path + "/console") { $0.smallGuestPages = smallPages }
        // procfs files have no size: read to the end rather than by length.
        let smaps = String(decoding: try FileDescriptor.open("/proc/self/smaps", O_RDONLY).readToEnd(limit: 64 << 20), as: UTF8.self)
        #expect(!machine.memory.hypervisorMappings.isEmpty)
        for mapping in machine.memory.hypervisorMappings {
            let start = String(UInt(bitPattern: mapping.host), radix: 16)
            // The mapping's block starts with its address range; its VmFlags line comes last.
            let flags = try #require(
                smaps.components(separatedBy: "\n").drop { !$0.hasPrefix(start + "-") }
                    .first { $0.hasPrefix("VmFlags:") }, "guest memory at 0x\(start) not in smaps")
            #expect(flags.split(separator: " ").contains("dd"), "\(flags)")
            #expect(flags.split(separator: " ").contains("nh") == smallPages, "\(flags)")
        }
    }

    @Test func withoutTheHookTheSameGuestRunsToItsEnd() throws {
        let directory = try TemporaryDirectory()
        let machine = try machine(.bootMarker, console: directory.path + "/console")
        let backstop = Watchdog(seconds: 60) { machine.stop(signal: 9) }
        defer { backstop.cancel() }
        #expect(try machine.run() == .poweredOff)
        #expect(try String(contentsOfFile: directory.path + "/console", encoding: .utf8) == "after the marker\n")
    }
}

/// A value shared with a watchdog thread.
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    private let lock = NSLock()
    private var stored: Value
    init(_ value: Value) { stored = value }
    var value: Value {
        get { lock.withLock { stored } }
        set { lock.withLock { stored = newValue } }
    }
}
