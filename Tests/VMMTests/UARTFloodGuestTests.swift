#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HostOS
import Synchronization
import Testing
@testable import VMM

/// A guest that floods the UART in loopback (its own output comes back as input) and never or
/// barely reads it, through the real VMM on the host's KVM: the host process's memory must stay
/// flat and the VM must end normally. Each flood runs in a child process (this test bundle,
/// filtered to `UARTFloodInChildProcess`), so other tests' allocations cannot blur the numbers.
/// One at a time: every byte is a VM exit, and the floods should leave a core to other tests.
@Suite(.serialized, .enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"))
struct UARTFloodGuestTests {
    /// Guest scenarios (Guests/uart_flood_guest.c) and how many rounds each runs.
    enum Scenario: Int, CaseIterable {
        /// 1 MiB written to THR, nothing read.
        case neverRead = 1
        /// 2 MiB written a queue's worth at a time, all but one byte read back each time.
        case onePending = 2
        /// A million single bytes, each followed by reading the byte before it.
        case onePendingBytewise = 3

        var rounds: Int {
            switch self {
            case .neverRead: 256
            case .onePending: 512
            case .onePendingBytewise: 1_000_000
            }
        }
    }

    /// Growth allowed for allocator noise, measured from a warmed-up VM (up to 310 KiB seen). The
    /// queue this replaced grew by 2 MiB in `onePending`.
    static let slackKiB = 1024

    @Test(arguments: Scenario.allCases)
    func loopbackFloodKeepsHostMemoryFlat(_ scenario: Scenario) throws {
        let binary = try FreestandingGuest.build(
            "uart_flood_guest.c",
            defines: [
                "SCENARIO": "\(scenario.rawValue)", "ROUNDS": "\(scenario.rounds)ull",
            ])
        let environment =
            ProcessInfo.processInfo.environment.map { "\($0.key)=\($0.value)" }
            + ["\(UARTFloodChild.guestVariable)=\(binary)"]
        let child = try Subprocess.run(
            [
                CommandLine.arguments[0], "--testing-library", "swift-testing",
                "--filter", "UARTFloodInChildProcess",
            ], environment: environment)
        let line = child.stdoutText.split(separator: "\n").first { $0.hasPrefix("uart-flood-child:") }
        #expect(child.status == 0, "child test failed: \(child.stdoutText.suffix(2000)) \(child.stderrText.suffix(2000))")
        let result = try #require(line.map(UARTFloodChild.Result.init), "no result line from the child: \(child.stdoutText.suffix(2000))")
        print("\(scenario): \(result.line)")
        #expect(result.exit == "guest powered off", "\(result.line)")
        #expect(result.rssAfterKiB - result.rssBeforeKiB <= Self.slackKiB, "VmRSS grew: \(result.line)")
        #expect(result.hwmAfterKiB - result.rssBeforeKiB <= Self.slackKiB, "VmHWM rose: \(result.line)")
        // The guest saw a real 16550's behaviour: data in order, overruns flagged, queue full.
        let sent = scenario == .onePendingBytewise ? scenario.rounds + 1 : scenario.rounds * 4096 + (scenario == .onePending ? 1 : 0)
        let received =
            switch scenario {
            case .neverRead: 4096
            case .onePending: scenario.rounds * 4095
            case .onePendingBytewise: scenario.rounds
            }
        let overruns =
            switch scenario {
            case .neverRead: 1
            case .onePending: scenario.rounds
            case .onePendingBytewise: 0
            }
        let pending = scenario == .neverRead ? 0 : 1
        #expect(
            result.console.contains("uart-flood: sent=\(sent) received=\(received) mismatches=0 overruns=\(overruns) pending=\(pending)"),
            "\(result.line)")
    }
}

/// The child side: runs the guest named by the environment once and prints one result line.
@Suite(.enabled(if: UARTFloodChild.guest != nil, "run by UARTFloodGuestTests in a child process"))
struct UARTFloodInChildProcess {
    @Test func runGuestAndMeasureMemory() throws {
        let binary = try #require(UARTFloodChild.guest)
        let directory = try TemporaryDirectory()
        let consolePath = directory.path + "/console.txt"
        let machine = try Machine(
            configuration: VMConfiguration(
                kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64, console: .file(consolePath)))
        // "Before" is taken once the guest, warmed up, writes the boot marker; the peak is
        // tracked from then on (writing 5 to clear_refs resets VmHWM to the current VmRSS).
        let before = UARTFloodChild.Sample()
        let sampler = Thread {
            while machine.exitReason == nil {
                if machine.bootMarkerNanoseconds != nil {
                    try? "5".write(toFile: "/proc/self/clear_refs", atomically: false, encoding: .utf8)
                    before.kib.withLock { $0 = try? UARTFloodChild.memoryKiB() }
                    return
                }
                usleep(1000)
            }
        }
        sampler.start()
        let watchdog = Watchdog(seconds: 600) { machine.stop(signal: 9) }
        let exit = try machine.run()
        watchdog.cancel()
        while !sampler.isFinished { usleep(1000) }
        let after = try UARTFloodChild.memoryKiB()
        let console = try String(contentsOfFile: consolePath, encoding: .utf8)
        let measured = try #require(before.kib.withLock { $0 }, "the guest never wrote the boot marker: \(console)")
        print(
            "uart-flood-child: exit=\(exit) rss-before-kib=\(measured.rss) rss-after-kib=\(after.rss) hwm-after-kib=\(after.hwm) console=\(console.replacingOccurrences(of: "\n", with: "|"))"
        )
        #expect(exit == .poweredOff)
    }
}

enum UARTFloodChild {
    static let guestVariable = "RUND_UART_FLOOD_GUEST"
    static var guest: String? { ProcessInfo.processInfo.environment[guestVariable] }

    /// VmRSS and VmHWM of this process, from /proc/self/status.
    static func memoryKiB() throws -> (rss: Int, hwm: Int) {
        let status = try String(contentsOfFile: "/proc/self/status", encoding: .utf8)
        func field(_ name: String) throws -> Int {
            // "VmRSS:\t   41776 kB"
            let line = status.split(separator: "\n").first { $0.hasPrefix(name + ":") }
            let fields = line?.split(whereSeparator: { $0 == " " || $0 == "\t" }) ?? []
            guard fields.count == 3, let kib = Int(fields[1]) else { throw UARTFloodChild.Unreadable(field: name) }
            return kib
        }
        return (try field("VmRSS"), try field("VmHWM"))
    }

    struct Unreadable: Error { var field: String }

    final class Sample: Sendable {
        let kib = Mutex<(rss: Int, hwm: Int)?>(nil)
    }

    /// The child's line, parsed.
    struct Result {
        var line: String
        var exit = ""
        var rssBeforeKiB = 0, rssAfterKiB = 0, hwmAfterKiB = 0
        var console = ""

        init(_ line: Substring) {
            self.line = String(line)
            let console = line.range(of: " console=")
            self.console = console.map { String(line[$0.upperBound...]) } ?? ""
            let head = console.map { line[..<$0.lowerBound] } ?? line
            exit =
                head.range(of: "exit=").flatMap { start in
                    head[start.upperBound...].range(of: " rss-before-kib=").map { String(head[start.upperBound..<$0.lowerBound]) }
                } ?? ""
            for field in head.split(separator: " ") {
                let parts = field.split(separator: "=", maxSplits: 1)
                guard parts.count == 2, let value = Int(parts[1]) else { continue }
                switch parts[0] {
                case "rss-before-kib": rssBeforeKiB = value
                case "rss-after-kib": rssAfterKiB = value
                case "hwm-after-kib": hwmAfterKiB = value
                default: break
                }
            }
        }
    }
}
