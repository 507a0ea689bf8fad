import Foundation
import HostOS
@testable import Sandbox
import Testing
import VMM

/// The template store on a real filesystem: listing, refusals in one line, removal, and what
/// `rund gc` reclaims. (Making and cloning a real template needs the rig: TemplateInRigTests.)
struct TemplateStoreTests {
    let root: String
    let store: TemplateStore
    let dependencies = TemplateDependencies(
        kernelVersion: "6.1.0-test", kernel: FileFingerprint(device: 1, inode: 2, size: 3, modifiedNanoseconds: 4), initramfs: "abc")

    init() throws {
        root =
            FileManager.default.temporaryDirectory.appendingPathComponent("templates-\(getpid())-\(UInt32.random(in: 0...UInt32.max))").path
        store = TemplateStore(stateRoot: root)
        try FileSystem.makeDirectories(store.directory)
    }

    /// A template directory with a manifest and a memory file (no machine state).
    func makeTemplate(_ name: String) throws -> TemplateManifest {
        try FileSystem.makeDirectories(store.directory + "/" + name)
        let memory = try FileSystem.open(at: nil, store.directory + "/\(name)/memory", O_RDWR | O_CREAT | O_CLOEXEC, mode: 0o600)
        defer { memory.close() }
        try FileSystem.truncate(memory, size: 256 << 20)
        let manifest = TemplateManifest(
            format: TemplateManifest.currentFormat, name: name, rundVersion: SandboxTemplate.rundVersion,
            snapshotFormat: MachineSnapshot.formatVersion, dependencies: dependencies, memoryMiB: 256, vcpuCount: 1,
            memoryFile: try FileFingerprint.of(memory), createdAt: 0, bootMilliseconds: 1)
        try write(Array(try JSONEncoder().encode(manifest)), to: "\(name)/manifest.json")
        return manifest
    }

    func write(_ bytes: [UInt8], to path: String) throws {
        let file = try FileSystem.open(at: nil, store.directory + "/" + path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { file.close() }
        try file.writeAll(bytes)
    }

    func refusal(_ body: () throws -> Void) -> String {
        do {
            try body()
            return "accepted"
        } catch {
            return "\(error)"
        }
    }

    @Test func listsTemplatesAndSaysWhichCannotBeRead() throws {
        defer { try? FileSystem.removeTree(root) }
        _ = try makeTemplate("good")
        try FileSystem.makeDirectories(store.directory + "/broken")
        try write(Array("{not json".utf8), to: "broken/manifest.json")
        try FileSystem.makeDirectories(store.directory + "/.making-half.1")
        let listed = try store.list()
        #expect(listed.map(\.name) == ["broken", "good"])
        #expect((try? listed[1].manifest.get())?.name == "good")
        #expect(refusal { _ = try listed[0].manifest.get() } == "template broken: its manifest is not one this rund reads")
        #expect(try TemplateStore(stateRoot: root + "/nowhere").list().isEmpty)
    }

    @Test func aTemplateThatDoesNotFitIsRefusedInOneLine() throws {
        defer { try? FileSystem.removeTree(root) }
        _ = try makeTemplate("t")
        var otherKernel = dependencies
        otherKernel.kernelVersion = "6.12.0-other"
        #expect(
            refusal { _ = try store.open("t", memoryMiB: 256, vcpuCount: 1, current: otherKernel) }
                == "template t does not fit: it holds kernel 6.1.0-test, the current kernel is 6.12.0-other")
        var otherAgent = dependencies
        otherAgent.initramfs = "def"
        #expect(
            refusal { _ = try store.open("t", memoryMiB: 256, vcpuCount: 1, current: otherAgent) }
                == "template t does not fit: the guest agent or its modules changed since it was made")
        #expect(
            refusal { _ = try store.open("t", memoryMiB: 512, vcpuCount: 1, current: dependencies) }
                == "template t does not fit: it has 256 MiB of memory, the sandbox asks for 512 MiB")
        #expect(
            refusal { _ = try store.open("t", memoryMiB: 256, vcpuCount: 2, current: dependencies) }
                == "template t does not fit: it has 1 vCPUs, the sandbox asks for 2")
        #expect(refusal { _ = try store.open("nope", memoryMiB: 256, vcpuCount: 1, current: dependencies) } == "there is no template nope")
        #expect(
            refusal { _ = try store.open("../x", memoryMiB: 256, vcpuCount: 1, current: dependencies) }.hasPrefix("invalid template name"))
        #expect(try store.firstMatching(memoryMiB: 256, vcpuCount: 1, current: dependencies) == "t")
        #expect(try store.firstMatching(memoryMiB: 256, vcpuCount: 1, current: otherKernel) == nil)
    }

    @Test func aDamagedTemplateIsRefused() throws {
        defer { try? FileSystem.removeTree(root) }
        _ = try makeTemplate("t")
        // The machine state is missing or not a snapshot.
        try write(Array("garbage".utf8), to: "t/machine.state")
        #expect(
            refusal { _ = try store.open("t", memoryMiB: 256, vcpuCount: 1, current: dependencies) }.hasPrefix(
                "template t is damaged: the machine snapshot cannot be read"))
        // The memory file was written to since.
        usleep(20_000)
        let memory = try FileSystem.open(at: nil, store.directory + "/t/memory", O_WRONLY | O_CLOEXEC)
        try memory.writeAll([1])
        memory.close()
        #expect(
            refusal { _ = try store.open("t", memoryMiB: 256, vcpuCount: 1, current: dependencies) }
                == "template t is damaged: its memory file changed since it was made")
    }

    @Test func removeAndReclaim() throws {
        defer { try? FileSystem.removeTree(root) }
        _ = try makeTemplate("t")
        #expect(try store.remove("t"))
        #expect(try !store.remove("t"))
        #expect(try store.list().isEmpty)
        // What a killed `create` left: its process is gone. A live one's work is kept.
        var dead: pid_t = 0
        let child = try Subprocess.run(["sh", "-c", "echo $$"])
        dead = pid_t(child.stdoutText.trimmingCharacters(in: .whitespacesAndNewlines)) ?? 0
        #expect(dead > 0)
        try FileSystem.makeDirectories(store.directory + "/.making-gone.\(dead)")
        try FileSystem.makeDirectories(store.directory + "/.making-gone.\(dead).removing")
        try FileSystem.makeDirectories(store.directory + "/.making-live.\(getpid())")
        #expect(try store.reclaimAbandoned(dryRun: true).sorted() == [".making-gone.\(dead)", ".making-gone.\(dead).removing"])
        #expect(FileSystem.exists(store.directory + "/.making-gone.\(dead)"))
        #expect(try store.reclaimAbandoned(dryRun: false).count == 2)
        #expect(!FileSystem.exists(store.directory + "/.making-gone.\(dead)"))
        #expect(FileSystem.exists(store.directory + "/.making-live.\(getpid())"))
    }
}
