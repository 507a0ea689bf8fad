#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HostOS

/// How a sandbox of a fleet starts: cold-booted with the default image device, cold with the
/// image on virtio-pmem or virtio-blk, or cloned from the template.
package enum FleetStart: String, Encodable, CaseIterable, Sendable {
    case cold
    case pmem
    case blk
    case clone
}

/// Many `rund run` processes at once, each a sandbox, cold-booted or cloned from a template:
/// what `rund bench density` and `rund bench concurrency` start and measure. Each sandbox is
/// its own process, as a platform runs them.
struct SandboxFleet {
    typealias Start = FleetStart

    let rund: String
    let root: String
    let image: String
    let memoryMiB: Int
    let vcpus: Int
    let template: String
    /// Extra `rund run` arguments for every sandbox (e.g. a test hook).
    var extraArguments: [String] = []

    func argv(_ start: Start, command: [String]) -> [String] {
        // Many cold boots at once on few cores take long: the agent gets as long as the fleet waits.
        [rund, "run", "--root", root, "--image", image, "--memory", "\(memoryMiB)", "--vcpus", "\(vcpus)", "--agent-timeout", "1800"]
            + Self.startArguments(start, template: template) + extraArguments + ["--"] + command
    }

    static func startArguments(_ start: Start, template: String) -> [String] {
        switch start {
        case .cold: return ["--no-template"]
        case .pmem: return ["--no-template", "--rootfs-device", "pmem"]
        case .blk: return ["--no-template", "--rootfs-device", "blk"]
        case .clone: return ["--template", template]
        }
    }

    /// One running sandbox process and the read end of its stdout.
    struct Member {
        let process: SpawnedProcess
        let output: FileDescriptor
        let spawnedAt: ContinuousClock.Instant
    }

    func spawn(_ start: Start, command: [String]) throws -> Member {
        let (read, write) = try Pipe.make()
        defer { write.close() }
        let spawnedAt = ContinuousClock.now
        let process = try SpawnedProcess.spawn(argv(start, command: command), standardOutput: write)
        return Member(process: process, output: read, spawnedAt: spawnedAt)
    }

    /// Waits until `member` prints a line `line` (its process ready), up to `limit`.
    static func waitForLine(_ line: String, from member: Member, within limit: Duration) throws {
        let deadline = ContinuousClock.now + limit
        var seen: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while !String(decoding: seen, as: UTF8.self).split(separator: "\n").contains(Substring(line)) {
            let left = deadline - ContinuousClock.now
            guard left > .zero else { throw BenchError("sandbox \(member.process.pid) did not print \(line) within \(limit)") }
            guard try member.output.waitReadable(milliseconds: Int32(min(1000, max(1, left.components.seconds * 1000)))) else {
                continue
            }
            let count = try buffer.withUnsafeMutableBytes { try member.output.read(into: $0) }
            guard count > 0 else {
                throw BenchError("sandbox \(member.process.pid) ended (status \(try member.process.wait())) before printing \(line)")
            }
            seen += buffer[..<count]
        }
    }

    /// For each count, a round of cold sandboxes and then one of clones (of `template`, or of
    /// one made for the benchmark and removed at the end): `body` starts them into `members`
    /// and measures; every member is ended and reaped after its round, however it ends.
    static func rounds<Row>(
        rund: String, root: String, image: String, counts: [Int], memoryMiB: Int, vcpus: Int, template given: String?,
        starts: [Start] = [.cold, .clone], extraArguments: [String] = [], _ body: (SandboxFleet, Start, Int, inout [Member]) throws -> Row
    ) throws -> [Row] {
        let template = try FleetTemplate(
            rund: rund, root: root, memoryMiB: memoryMiB, vcpus: vcpus, given: given, needed: starts.contains(.clone))
        defer { template.remove(rund: rund, root: root) }
        let fleet = SandboxFleet(
            rund: rund, root: root, image: image, memoryMiB: memoryMiB, vcpus: vcpus, template: template.name,
            extraArguments: extraArguments)
        var rows: [Row] = []
        for count in counts {
            for start in starts {
                var members: [Member] = []
                defer { end(members) }
                rows.append(try body(fleet, start, count, &members))
            }
        }
        return rows
    }

    /// Ends every member and reaps it: SIGTERM twice (rund forwards the first to the process,
    /// which as the container's PID 1 may ignore it; the second stops the VM at once).
    static func end(_ members: [Member]) {
        for member in members { member.process.kill(SIGTERM) }
        usleep(200_000)
        for member in members { member.process.kill(SIGTERM) }
        for member in members {
            _ = try? member.process.wait()
            member.output.close()
        }
    }
}

/// The memory a process costs, from /proc/PID/smaps: proportional (PSS, shared pages split
/// between their users) and private, with guest RAM apart from everything else. Guest RAM is
/// the mapping the size of the guest's memory (anonymous, or a template's memory file); when
/// the guest's kernel is mapped from its `vmlinux` (`LinuxBoot.load`), those mappings split
/// it, and guest RAM is then the run of mappings that starts just below the first of them and
/// is the guest's memory long.
struct ProcessMemory: Encodable {
    var guestPssKiB = 0
    var guestPrivateKiB = 0
    /// Guest pages that are the process's own memory (written since boot or restore): the rest
    /// of guest RAM is file pages (a template's memory, the kernel's `vmlinux`), which the host
    /// can drop and read again.
    var guestAnonymousKiB = 0
    /// The image file mapped for virtio-pmem (its pages are the host's page cache, shared by
    /// every sandbox of the image).
    var imagePssKiB = 0
    var imageRssKiB = 0
    var otherPssKiB = 0
    var otherPrivateKiB = 0

    /// One mapping of smaps.
    struct Mapping {
        var start: UInt64
        var end: UInt64
        var path: Substring?
        var rssKiB = 0
        var pssKiB = 0
        var privateKiB = 0
        var anonymousKiB = 0
        var sizeKiB: Int { Int((end - start) / 1024) }
    }

    init(pid: pid_t, guestMappingKiB: Int) throws {
        // Read to its end in a loop: the file's size is 0, and a reader that trusts the size
        // stops after the first block (a few mappings).
        let text: String
        do {
            let file = try FileDescriptor.open("/proc/\(pid)/smaps", O_RDONLY | O_CLOEXEC)
            defer { file.close() }
            text = String(decoding: try file.readToEnd(limit: 256 << 20), as: UTF8.self)
        } catch {
            throw BenchError("cannot read /proc/\(pid)/smaps: \(error)")
        }
        let mappings = Self.mappings(text)
        let guest = Self.guestRange(mappings, guestKiB: guestMappingKiB)
        for mapping in mappings {
            if mapping.path?.hasSuffix("/rootfs.erofs") == true {
                imageRssKiB += mapping.rssKiB
                imagePssKiB += mapping.pssKiB  // never private: a read-only shared mapping
            } else if let guest, guest.contains(mapping.start) {
                guestPssKiB += mapping.pssKiB
                guestPrivateKiB += mapping.privateKiB
                guestAnonymousKiB += mapping.anonymousKiB
            } else {
                otherPssKiB += mapping.pssKiB
                otherPrivateKiB += mapping.privateKiB
            }
        }
    }

    static func mappings(_ smaps: String) -> [Mapping] {
        var mappings: [Mapping] = []
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            // A mapping's first line: "start-end perms offset dev inode [path]".
            if let first = fields.first, fields.count >= 5, let dash = first.firstIndex(of: "-"),
                let start = UInt64(first[..<dash], radix: 16), let end = UInt64(first[first.index(after: dash)...], radix: 16),
                start <= end
            {
                mappings.append(Mapping(start: start, end: end, path: fields.count >= 6 ? fields[5] : nil))
                continue
            }
            guard !mappings.isEmpty, let key = fields.first, let value = fields.dropFirst().first.flatMap({ Int($0) }) else { continue }
            switch key {
            case "Rss:": mappings[mappings.count - 1].rssKiB += value
            case "Pss:": mappings[mappings.count - 1].pssKiB += value
            case "Private_Clean:", "Private_Dirty:": mappings[mappings.count - 1].privateKiB += value
            case "Anonymous:": mappings[mappings.count - 1].anonymousKiB += value
            default: break
            }
        }
        return mappings
    }

    /// The host addresses of guest RAM, or nil when no mapping looks like it.
    static func guestRange(_ mappings: [Mapping], guestKiB: Int) -> Range<UInt64>? {
        let length = UInt64(guestKiB) * 1024
        if let kernel = mappings.firstIndex(where: { $0.path?.hasSuffix("/vmlinux") == true }), kernel > 0,
            mappings[kernel - 1].end == mappings[kernel].start, mappings[kernel - 1].path == nil
        {
            let start = mappings[kernel - 1].start
            return start..<(start + length)
        }
        return mappings.first { $0.sizeKiB == guestKiB }.map { $0.start..<$0.end }
    }

    init() {}

    static func + (a: ProcessMemory, b: ProcessMemory) -> ProcessMemory {
        var sum = ProcessMemory()
        sum.guestPssKiB = a.guestPssKiB + b.guestPssKiB
        sum.guestPrivateKiB = a.guestPrivateKiB + b.guestPrivateKiB
        sum.guestAnonymousKiB = a.guestAnonymousKiB + b.guestAnonymousKiB
        sum.imagePssKiB = a.imagePssKiB + b.imagePssKiB
        sum.imageRssKiB = a.imageRssKiB + b.imageRssKiB
        sum.otherPssKiB = a.otherPssKiB + b.otherPssKiB
        sum.otherPrivateKiB = a.otherPrivateKiB + b.otherPrivateKiB
        return sum
    }
}

/// Makes the template a fleet clones from (removed by `remove`), unless one was given.
struct FleetTemplate {
    let name: String
    let made: Bool

    init(rund: String, root: String, memoryMiB: Int, vcpus: Int, given: String?, needed: Bool = true) throws {
        if let given {
            name = given
            made = false
            return
        }
        guard needed else {
            name = ""
            made = false
            return
        }
        name = "bench-fleet-\(getpid())"
        _ = try Subprocess.checked([
            rund, "template", "create", "--root", root, "--name", name, "--memory", "\(memoryMiB)", "--vcpus", "\(vcpus)",
        ])
        made = true
    }

    func remove(rund: String, root: String) {
        if made { _ = try? Subprocess.run([rund, "template", "rm", "--root", root, name]) }
    }
}

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1000 + Double(components.attoseconds) / 1e15 }
}
