import CLinux
import Foundation
import GuestMemory
import HostOS
import Testing
@testable import VMM

/// Snapshots and copy-on-write clones on this host's real KVM, with a freestanding guest
/// (`Guests/snapshot_guest.c`) paused in the middle of a long computation.
@Suite(
    .enabled(if: HostKVM.isUsable, "needs a usable /dev/kvm"),
    .enabled(if: FreestandingGuest.canBuild, "needs gcc and objcopy to build the test guests"),
    .serialized)
struct MachineSnapshotTests {
    static let progress: GuestAddress = 0x40_0000
    static let mark: GuestAddress = 0x60_0000
    static let chunks: UInt64 = 2048

    /// Steps per chunk (`CHUNK_STEPS` in the guest): small, since PVM emulates a freestanding
    /// guest's instructions one by one (about a microsecond each).
    static let chunkSteps: UInt64 = 1 << 10

    /// The guest's LCG after `chunks * chunkSteps` steps from its seed, by jumping ahead.
    static let expectedResult: UInt64 = {
        let a: UInt64 = 6_364_136_223_846_793_005, c: UInt64 = 1_442_695_040_888_963_407
        var (multiplier, increment) = (UInt64(1), UInt64(0))
        var (stepMultiplier, stepIncrement) = (a, c)
        var steps = chunks * chunkSteps
        while steps > 0 {
            if steps & 1 != 0 {
                multiplier = multiplier &* stepMultiplier
                increment = increment &* stepMultiplier &+ stepIncrement
            }
            stepIncrement = (stepMultiplier &+ 1) &* stepIncrement
            stepMultiplier = stepMultiplier &* stepMultiplier
            steps >>= 1
        }
        return multiplier &* 0x2545_f491_4f6c_dd1d &+ increment
    }()

    struct Template {
        let directory: TemporaryDirectory
        let snapshot: MachineSnapshot
        var memoryPath: String { directory.path + "/memory" }
        let progressAtPause: UInt64
    }

    /// Boots the guest with an empty drive, waits until it has done some of its work, pauses it
    /// and saves it; the original is then stopped.
    func makeTemplate(vcpus: Int = 1, balloonTarget: UInt32? = nil) throws -> Template {
        let binary = try FreestandingGuest.build("snapshot_guest.c", defines: [:])
        let directory = try TemporaryDirectory()
        var configuration = VMConfiguration(
            kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64,
            vcpuCount: vcpus, disks: [.init(path: nil, readOnly: true)],
            console: .file(directory.path + "/template-console"))
        configuration.confineThreads = true
        configuration.balloon = balloonTarget != nil
        let machine = try Machine(configuration: configuration)
        if let balloonTarget { machine.balloon?.setTarget(pages: balloonTarget) }
        let ended = LockedBox<MachineExit?>(nil)
        let runner = try OSThread.spawn(name: "template") { ended.value = try? machine.run() }
        defer {
            machine.stop(signal: 15)
            runner.join()
        }
        let deadline = Date().addingTimeInterval(60)
        while try machine.memory.load(UInt64.self, at: Self.progress) == 0, machine.exitReason == nil, Date() < deadline {
            Thread.sleep(forTimeInterval: 0.01)
        }
        if let exit = machine.exitReason {
            let console = (try? String(contentsOfFile: directory.path + "/template-console", encoding: .utf8)) ?? ""
            throw MachineSnapshotError.failed("the template guest ended before its snapshot: \(exit); console: \(console)")
        }
        try machine.pause()
        let progress = try machine.memory.load(UInt64.self, at: Self.progress)
        let file = try FileDescriptor.open(directory.path + "/memory", O_RDWR | O_CREAT | O_TRUNC, mode: 0o600)
        let snapshot = try machine.snapshot(writingMemoryTo: file)
        return Template(directory: directory, snapshot: snapshot, progressAtPause: progress)
    }

    func cloneConfiguration(_ template: Template, disk: String, console: String, memoryMiB: Int = 64) -> VMConfiguration {
        let c = VMConfiguration(
            kernelPath: "/nonexistent", kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: memoryMiB,
            vcpuCount: template.snapshot.vcpus.count, disks: [.init(path: disk, readOnly: true)], console: .file(console))
        return c
    }

    func disk(_ text: String, in directory: TemporaryDirectory) throws -> String {
        let path = directory.path + "/disk-\(text.replacingOccurrences(of: " ", with: "-"))"
        var bytes = [UInt8](repeating: 0, count: 64 << 10)
        bytes.replaceSubrange(0..<text.utf8.count, with: text.utf8)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        return path
    }

    @Test func twoClonesResumeAComputationMidWayAndKeepTheirWritesToThemselves() throws {
        let template = try makeTemplate()
        // Paused in the middle: some chunks done, not all.
        #expect(template.progressAtPause > 0 && template.progressAtPause < Self.chunks, "progress \(template.progressAtPause)")
        let memoryBefore = try Data(contentsOf: URL(fileURLWithPath: template.memoryPath))
        #expect(memoryBefore.count == 64 << 20)
        // The saved snapshot goes through its encoding, as a template's does; a flipped byte
        // or a cut anywhere is refused, never half read.
        let encoded = template.snapshot.encoded()
        let snapshot = try MachineSnapshot(decoding: encoded)
        for offset in stride(from: 0, to: encoded.count, by: max(1, encoded.count / 64)) {
            var flipped = encoded
            flipped[offset] ^= 0x40
            #expect(throws: MachineSnapshotError.self) { try MachineSnapshot(decoding: flipped) }
            #expect(throws: MachineSnapshotError.self) { try MachineSnapshot(decoding: Array(encoded[..<offset])) }
        }

        let directory = template.directory
        let memoryFile = try FileDescriptor.open(template.memoryPath, O_RDONLY)
        let consoleA = directory.path + "/console-a", consoleB = directory.path + "/console-b"
        let cloneA = try Machine(
            restoring: snapshot, memoryFile: memoryFile,
            configuration: cloneConfiguration(template, disk: try disk("clone A", in: directory), console: consoleA))
        let cloneB = try Machine(
            restoring: snapshot, memoryFile: memoryFile,
            configuration: cloneConfiguration(template, disk: try disk("clone B", in: directory), console: consoleB))
        let watchdog = Watchdog(seconds: 120) {
            cloneA.stop(signal: 9)
            cloneB.stop(signal: 9)
        }
        defer { watchdog.cancel() }

        // Both start where the template stopped.
        #expect(try cloneA.memory.load(UInt64.self, at: Self.progress) == template.progressAtPause)
        let exitA = try cloneA.run()
        #expect(exitA == .poweredOff)
        let reportA = try String(contentsOfFile: consoleA, encoding: .utf8)
        let result = "result=" + String(Self.expectedResult, radix: 16).leftPadded(to: 16)
        #expect(reportA.hasPrefix(result), "\(reportA)")
        // The drive the template left empty got clone A's disk, announced by a config change.
        #expect(reportA.contains("capacity=128 generation=1 isr=2 status=0 sector0=clone A"), "\(reportA)")
        #expect(try cloneA.memory.readBytes(at: Self.mark, count: 7) == Array("clone A".utf8))
        #expect(try cloneA.memory.load(UInt64.self, at: Self.progress) == Self.chunks)

        // Clone A's writes are its own: clone B still sees the template's memory there.
        #expect(try cloneB.memory.readBytes(at: Self.mark, count: 7) == [UInt8](repeating: 0, count: 7))
        #expect(try cloneB.memory.load(UInt64.self, at: Self.progress) == template.progressAtPause)
        #expect(try cloneB.run() == .poweredOff)
        let reportB = try String(contentsOfFile: consoleB, encoding: .utf8)
        #expect(reportB.hasPrefix(result), "\(reportB)")
        #expect(reportB.contains("sector0=clone B"), "\(reportB)")
        #expect(try cloneA.memory.readBytes(at: Self.mark, count: 7) == Array("clone A".utf8))

        // And the template's memory file is exactly as saved.
        #expect(try Data(contentsOf: URL(fileURLWithPath: template.memoryPath)) == memoryBefore)
    }
}

extension MachineSnapshotTests {
    /// A template's VM has a balloon: the snapshot keeps its target and the guest's count, a
    /// clone gets them back on a balloon of its own, and a clone without one, or a saved target
    /// larger than the clone's memory, is refused before it runs.
    @Test func theBalloonIsSavedAndRestored() throws {
        let template = try makeTemplate(balloonTarget: 7)
        #expect(template.snapshot.virtio.map(\.kind).last == .balloon(target: 7, actual: 0))
        let snapshot = try MachineSnapshot(decoding: template.snapshot.encoded())
        #expect(snapshot.virtio.map(\.kind) == template.snapshot.virtio.map(\.kind))

        let directory = template.directory
        let memoryFile = try FileDescriptor.open(template.memoryPath, O_RDONLY)
        var configuration = cloneConfiguration(template, disk: try disk("balloon", in: directory), console: directory.path + "/console")
        #expect(throws: MachineSnapshotError.mismatch("it has 2 virtio devices, the VM asked for has 1")) {
            try Machine(restoring: snapshot, memoryFile: memoryFile, configuration: configuration)
        }
        configuration.balloon = true
        let clone = try Machine(restoring: snapshot, memoryFile: memoryFile, configuration: configuration)
        let balloon = try #require(clone.balloon)
        #expect(balloon.savedPages.target == 7 && balloon.savedPages.actual == 0)
        clone.close()

        // 64 MiB is 16384 pages: a target past it is not a snapshot this VM could have taken.
        var hostile = snapshot
        hostile.virtio[hostile.virtio.count - 1].kind = .balloon(target: 16385, actual: 0)
        #expect(throws: MachineSnapshotError.mismatch("virtio device 1: a balloon target of 16385 pages is more than the guest's 16384")) {
            try Machine(restoring: hostile, memoryFile: memoryFile, configuration: configuration)
        }
    }
}

/// The CPUID comparison a restore makes: per-CPU APIC ids (which KVM_GET_SUPPORTED_CPUID
/// reports for whichever host CPU ran the call) do not count, features do.
@Test func cpuidComparisonIgnoresAPICIdsButNotFeatures() {
    func entry(_ function: UInt32, eax: UInt32 = 0, ebx: UInt32 = 0, ecx: UInt32 = 0, edx: UInt32 = 0) -> kvm_cpuid_entry2 {
        var entry = kvm_cpuid_entry2()
        entry.function = function
        (entry.eax, entry.ebx, entry.ecx, entry.edx) = (eax, ebx, ecx, edx)
        return entry
    }
    let saved = [entry(0x1, eax: 0x663, ebx: 0x0102_0800, ecx: 0x76f8_3203), entry(0xb, edx: 1), entry(0x7, ebx: 0x29)]
    let elsewhere = [entry(0x7, ebx: 0x29), entry(0x1, eax: 0x663, ebx: 0x0002_0800, ecx: 0x76f8_3203), entry(0xb, edx: 0)]
    #expect(MachineSnapshot.firstCPUIDDifference(elsewhere, saved) == nil)
    let fewerFeatures = [entry(0x1, eax: 0x663, ebx: 0x0002_0800, ecx: 0x76f8_3201), entry(0xb), entry(0x7, ebx: 0x29)]
    #expect(
        MachineSnapshot.firstCPUIDDifference(fewerFeatures, saved) == "0x1.0: 0,663,20800,76f83201,0 here, 0,663,20800,76f83203,0 saved")
    #expect(MachineSnapshot.firstCPUIDDifference(Array(saved.dropLast()), saved) == "0x7.0: absent here, 0,0,29,0,0 saved")
}

extension String {
    func leftPadded(to width: Int) -> String {
        String(repeating: "0", count: max(0, width - count)) + self
    }
}
