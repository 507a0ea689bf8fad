import Foundation
import KVM
import Testing
@testable import VMM

/// The real VMM (Machine, IOBus, serial, virtio-mmio, virtio-blk, ACPI poweroff) driven by a
/// freestanding guest on the host's KVM. Hostile scenarios must leave the VMM standing: the
/// device reports an error or needs a reset, the guest still powers off, the disk is untouched.
@Suite(.enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"))
struct VirtioBlockGuestTests {
    enum Scenario: Int, CaseIterable {
        case readSector0 = 1, writeSector1, descriptorOutsideMemory, descriptorLoop, hugeLength,
            wrongDirection, availIndexJump, ringOutsideMemory
        case ringMisaligned = 10
    }

    static let sector0 = "rund test disk: sector zero"

    /// Runs one scenario; returns the console text, how the VM ended and the disk afterwards.
    func run(_ scenario: Scenario, readOnly: Bool = false) throws -> (console: String, exit: MachineExit, disk: [UInt8]) {
        let binary = try FreestandingGuest.build("virtio_blk_guest.c", defines: ["SCENARIO": "\(scenario.rawValue)"])
        let directory = try TemporaryDirectory()
        let diskPath = directory.path + "/disk.img", consolePath = directory.path + "/console.txt"
        var disk = [UInt8](repeating: 0, count: 1 << 20)
        disk.replaceSubrange(0..<Self.sector0.utf8.count, with: Self.sector0.utf8)
        try Data(disk).write(to: URL(fileURLWithPath: diskPath))

        let configuration = VMConfiguration(
            kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64,
            disks: [.init(path: diskPath, readOnly: readOnly)], console: .file(consolePath))
        let machine = try Machine(configuration: configuration)
        let watchdog = Watchdog(seconds: 30) { machine.stop(signal: 9) }
        let exit = try machine.run()
        watchdog.cancel()
        let console = try String(contentsOfFile: consolePath, encoding: .utf8)
        return (console, exit, Array(try Data(contentsOf: URL(fileURLWithPath: diskPath))))
    }

    @Test func readsSectorZeroThroughTheVirtqueue() throws {
        let result = try run(.readSector0)
        #expect(result.exit == .poweredOff)
        #expect(result.console.contains("sector0=\(Self.sector0)"))
        #expect(result.console.contains("used_idx=1 status=0 "))
    }

    @Test func writesReachTheBackingFile() throws {
        let result = try run(.writeSector1)
        #expect(result.exit == .poweredOff)
        #expect(result.console.contains("used_idx=1 status=0 "))
        #expect(Array(result.disk[512..<532]) == Array("written by the guest".utf8))
    }

    @Test func readOnlyDiskRefusesWrites() throws {
        let result = try run(.writeSector1, readOnly: true)
        #expect(result.exit == .poweredOff)
        #expect(!result.console.contains("status=0 "))
        #expect(result.disk[512..<532].allSatisfy { $0 == 0 })
    }

    @Test(arguments: [
        Scenario.descriptorOutsideMemory, .descriptorLoop, .hugeLength, .wrongDirection,
        .availIndexJump, .ringOutsideMemory, .ringMisaligned,
    ])
    func hostileQueuesAreRefusedAndTheVMMSurvives(_ scenario: Scenario) throws {
        let result = try run(scenario)
        #expect(result.exit == .poweredOff, "the guest must still reach poweroff: \(result.console)")
        let report = result.console.split(separator: "\n").last { $0.hasPrefix("used_idx=") }
        let fields = Dictionary(
            uniqueKeysWithValues: (report ?? "").split(separator: " ").compactMap { field -> (String, Int)? in
                let parts = field.split(separator: "=")
                guard parts.count == 2, let value = Int(parts[1]) else { return nil }
                return (String(parts[0]), value)
            })
        let needsReset = (fields["device_status"] ?? 0) & 0x40 != 0
        let failedRequest = fields["status"].map { $0 != 0 } ?? false
        #expect(needsReset || failedRequest, "\(scenario): \(result.console)")
        if scenario == .ringMisaligned {
            // Refused when the queue was enabled: the device never wrote the misplaced used ring.
            #expect(needsReset && fields["used_idx"] == 0, "\(result.console)")
        }
        #expect(String(decoding: result.disk.prefix(Self.sector0.utf8.count), as: UTF8.self) == Self.sector0)
        #expect(result.disk[Self.sector0.utf8.count...].allSatisfy { $0 == 0 })
    }
}

/// Calls `action` after `seconds` unless cancelled: keeps a wedged guest from hanging the suite.
final class Watchdog: @unchecked Sendable {
    private let lock = NSLock()
    private var cancelled = false

    /// With `once`, `action` comes as soon as `once` holds (polled), or after `seconds` at the latest:
    /// a test that must act after the guest has reached a point waits for that point, not for a
    /// guess of how long a loaded machine takes to get there.
    init(seconds: Double, once: (@Sendable () -> Bool)? = nil, action: @escaping @Sendable () -> Void) {
        Thread.detachNewThread { [self] in
            let deadline = Date().addingTimeInterval(seconds)
            while Date() < deadline {
                Thread.sleep(forTimeInterval: 0.05)
                if lock.withLock({ cancelled }) { return }
                if let once, once() { break }
            }
            action()
        }
    }

    func cancel() { lock.withLock { cancelled = true } }
}

enum HostKVM {
    static let isUsable: Bool = (try? KVMSystem()) != nil
}
