#if canImport(Glibc)
import Glibc
#endif
import Boot
import Foundation
import HostOS
import Network
import Sandbox

/// `rund bench net`: TCP throughput both ways and round-trip latency between L1 (this host) and
/// a guest, through rund's virtio-net and through QEMU microvm's, with and without offloads,
/// alternating within each run. Both guests sit behind the same kind of network (a namespace of
/// their own, a veth, tc redirects to a tap: `SandboxNetwork`), so only the VMM's device and
/// its I/O path differ. The guest side is `netbench serve` (scripts/lib/netbench.c), the host
/// side `netbench client`.
package enum NetworkBenchmark {
    package struct Options: Sendable {
        package var rund: String
        package var netbench: String
        package var stateRoot: String
        package var kernel: String
        package var qemu: String
        package var runs: Int
        package var seconds: Double
        package var rounds: Int
        package var memoryMiB: Int
        package var timeout: Double

        package init(
            rund: String, netbench: String, stateRoot: String, kernel: String, qemu: String, runs: Int, seconds: Double,
            rounds: Int, memoryMiB: Int, timeout: Double
        ) {
            (self.rund, self.netbench, self.stateRoot, self.kernel, self.qemu) = (rund, netbench, stateRoot, kernel, qemu)
            (self.runs, self.seconds, self.rounds, self.memoryMiB, self.timeout) = (runs, seconds, rounds, memoryMiB, timeout)
        }
    }

    /// One client run: Mbit/s each way, round trips in microseconds.
    package struct Sample: Encodable, Sendable {
        package let uploadMbps: Double
        package let downloadMbps: Double
        package let rttP50Us: Double
        package let rttP99Us: Double
    }

    package enum VMM: String, Encodable, Sendable {
        case rund, qemu
    }

    package struct Subject: Encodable, Sendable {
        package let vmm: VMM
        package let offloads: Bool
        package var samples: [Sample] = []
        package var failures: [String] = []

        var name: String { "\(vmm == .rund ? "rund" : "qemu-microvm") offloads \(offloads ? "on" : "off")" }
    }

    package struct Report: Encodable, Sendable {
        package let runs: Int
        package let seconds: Double
        package let rounds: Int
        package let subjects: [Subject]
        /// What both guests' traffic goes through.
        package let path = "L1 <-> veth <-> (namespace: tc redirect) <-> tap <-> the VMM's virtio-net <-> guest"

        package func text() -> String {
            var lines = [
                "bench net: \(runs) runs, \(seconds) s each way, \(rounds) one-byte round trips; medians (p99 over runs)",
                "path: \(path)",
                "subject                        L1->guest Mbit/s   guest->L1 Mbit/s   RTT p50 us   RTT p99 us",
            ]
            for subject in subjects {
                let row = [
                    subject.samples.map(\.uploadMbps), subject.samples.map(\.downloadMbps), subject.samples.map(\.rttP50Us),
                    subject.samples.map(\.rttP99Us),
                ]
                .map { String(format: "%9.1f (%7.1f)", Percentile.of($0, fraction: 0.5), Percentile.of($0, fraction: 0.99)) }
                lines.append(subject.name.padding(toLength: 30, withPad: " ", startingAt: 0) + " " + row.joined(separator: " "))
                if let first = subject.failures.first {
                    lines.append("  \(subject.failures.count) of \(runs) runs failed; the first: \(first)")
                }
            }
            for offloads in [true, false] {
                guard let ours = subjects.first(where: { $0.vmm == .rund && $0.offloads == offloads }),
                    let peer = subjects.first(where: { $0.vmm == .qemu && $0.offloads == offloads })
                else { continue }
                func ratio(_ value: (Sample) -> Double) -> Double {
                    Percentile.of(ours.samples.map(value), fraction: 0.5) / Percentile.of(peer.samples.map(value), fraction: 0.5)
                }
                lines.append(
                    String(
                        format: "ratio rund/qemu, offloads %@: L1->guest %.2f, guest->L1 %.2f, RTT p50 %.2f",
                        offloads ? "on" : "off", ratio(\.uploadMbps), ratio(\.downloadMbps), ratio(\.rttP50Us)))
            }
            return lines.joined(separator: "\n")
        }
    }

    static let port = 5001

    package static func run(_ options: Options) throws -> Report {
        let work = try TemporaryDirectory(prefix: "rund-bench-net")
        defer { work.remove() }
        let rootfs = try makeRootfs(netbench: options.netbench, in: work.path)
        let initramfs = try makeInitramfs(netbench: options.netbench, in: work.path)
        var subjects = [VMM.rund, .qemu].flatMap { vmm in [true, false].map { Subject(vmm: vmm, offloads: $0) } }
        for run in 0..<options.runs {
            for index in subjects.indices {
                do {
                    let sample =
                        subjects[index].vmm == .rund
                        ? try measureRund(options, rootfs: rootfs, offloads: subjects[index].offloads)
                        : try measureQEMU(options, initramfs: initramfs, offloads: subjects[index].offloads, run: run)
                    subjects[index].samples.append(sample)
                } catch {
                    subjects[index].failures.append("\(error)")
                }
            }
        }
        return Report(runs: options.runs, seconds: options.seconds, rounds: options.rounds, subjects: subjects)
    }

    /// A root with netbench alone, for `rund run --rootfs`.
    static func makeRootfs(netbench: String, in work: String) throws -> String {
        let root = work + "/rootfs"
        try FileSystem.makeDirectories(root + "/tmp")
        try copy(netbench, to: root + "/netbench")
        return root
    }

    /// An initramfs with netbench alone: QEMU's guest runs it as its init (rdinit=/netbench).
    static func makeInitramfs(netbench: String, in work: String) throws -> String {
        var archive = NewcArchive()
        archive.addDirectory("dev")
        archive.addFile("netbench", data: try contents(netbench), executable: true)
        archive.finish()
        let path = work + "/netbench.cpio"
        let file = try FileDescriptor.open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        defer { file.close() }
        try file.writeAll(archive.bytes)
        return path
    }

    /// `rund run --network default` serving, measured from here, then stopped with SIGTERM.
    static func measureRund(_ options: Options, rootfs: String, offloads: Bool) throws -> Sample {
        let argv =
            [
                options.rund, "run", "--root", options.stateRoot, "--network", "default", "--rootfs", rootfs, "--memory",
                "\(options.memoryMiB)", "--stop-timeout", "1", "--no-template",
            ] + (offloads ? [] : ["--no-network-offloads"]) + ["--", "/netbench", "serve", "\(port)"]
        return try measureGuest(argv, passing: [], timeout: options.timeout, options: options)
    }

    /// QEMU microvm on rund's guest kernel, its virtio-net on a tap in a namespace set up as a
    /// sandbox's (`SandboxNetwork`), the guest's address given to netbench on the command line.
    static func measureQEMU(_ options: Options, initramfs: String, offloads: Bool, run: Int) throws -> Sample {
        guard let network = try SandboxNetwork.prepare(.default, sandboxID: "bench-net-qemu-\(run)", stateRoot: options.stateRoot)
        else { throw BenchError("no network was made for QEMU's guest") }
        defer { network.release() }
        guard let address = network.interface.addresses.first else { throw BenchError("the namespace's interface has no address") }
        let features = offloads ? "" : ",csum=off,guest_csum=off,gso=off,host_tso4=off,host_tso6=off,guest_tso4=off,guest_tso6=off"
        let argv = [
            options.qemu, "-M", "microvm,accel=kvm", "-cpu", "host", "-m", "\(options.memoryMiB)", "-smp", "1", "-nodefaults",
            "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio", "-kernel", options.kernel, "-initrd", initramfs,
            "-append", try KernelCommandLine.build(extra: "quiet rdinit=/netbench -- serve \(port) \(address)"),
            "-netdev", "tap,id=net0,fd=3",
            "-device", "virtio-net-device,netdev=net0,mac=\(MACAddress.text(network.interface.mac))\(features)",
        ]
        return try measureGuest(argv, passing: [(network.tap.file, 3)], timeout: options.timeout, options: options)
    }

    /// Starts a guest that runs `netbench serve`, waits for its "serving at ADDRESS" line, runs
    /// the client against that address, then stops the guest (SIGTERM, SIGKILL after 20 s).
    static func measureGuest(
        _ argv: [String], passing: [(descriptor: FileDescriptor, as: Int32)], timeout: Double, options: Options
    ) throws -> Sample {
        let pipe = try Pipe.make()
        let child = try SpawnedProcess.spawn(argv, standardOutput: pipe.write, standardError: pipe.write, passing: passing)
        pipe.write.close()
        defer {
            child.kill(SIGTERM)
            // Drained until the guest's end closes its output, for at most 20 s.
            let deadline = ContinuousClock.now + .seconds(20)
            var chunk = [UInt8](repeating: 0, count: 4096)
            while ContinuousClock.now < deadline {
                guard (try? pipe.read.waitReadable(milliseconds: 200)) == true else { continue }
                if ((try? chunk.withUnsafeMutableBytes { try pipe.read.read(into: $0) }) ?? 0) == 0 { break }
            }
            child.kill(SIGKILL)
            _ = try? child.wait()
            pipe.read.close()
        }
        let address = try waitForServer(pipe.read, timeout: timeout, argv0: argv[0])
        let result = try Subprocess.run([
            options.netbench, "client", address, "\(port)", "\(options.seconds)", "\(options.rounds)",
        ])
        guard result.status == 0 else {
            throw BenchError("netbench client against \(address) failed (status \(result.status)): \(result.stderrText)")
        }
        return try parse(result.stdoutText)
    }

    /// Reads the guest's output until "netbench: serving at ADDRESS port N"; returns ADDRESS.
    static func waitForServer(_ output: FileDescriptor, timeout: Double, argv0: String) throws -> String {
        var seen: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = ContinuousClock.now + .milliseconds(Int64(timeout * 1000))
        while ContinuousClock.now < deadline {
            guard try output.waitReadable(milliseconds: 200) else { continue }
            let count = try chunk.withUnsafeMutableBytes { try output.read(into: $0) }
            guard count > 0 else { break }
            seen = Array((seen + chunk[0..<count]).suffix(8192))
            let text = String(decoding: seen, as: UTF8.self)
            // Only a whole line: a serial console delivers it in pieces.
            if let line = text.split(whereSeparator: { $0 == "\n" || $0 == "\r" }).first(where: {
                $0.contains("netbench: serving at ") && $0.contains(" port ")
            }) {
                let words = line.split(separator: " ")
                if let at = words.firstIndex(of: "at"), at + 1 < words.count { return String(words[at + 1]) }
            }
        }
        let tail = String(decoding: seen.suffix(500), as: UTF8.self).replacingOccurrences(of: "\n", with: " | ")
        throw BenchError("\(argv0): the guest's netbench never said it was serving; output ends: \(tail)")
    }

    /// "upload_mbps=... download_mbps=... rtt_p50_us=... rtt_p99_us=..."
    static func parse(_ line: String) throws -> Sample {
        var values: [String: Double] = [:]
        for pair in line.split(whereSeparator: { $0 == " " || $0 == "\n" }) {
            let parts = pair.split(separator: "=")
            if parts.count == 2, let value = Double(parts[1]) { values[String(parts[0])] = value }
        }
        guard let up = values["upload_mbps"], let down = values["download_mbps"], let p50 = values["rtt_p50_us"],
            let p99 = values["rtt_p99_us"]
        else { throw BenchError("netbench client printed '\(line)', not its four figures") }
        return Sample(uploadMbps: up, downloadMbps: down, rttP50Us: p50, rttP99Us: p99)
    }

    static func contents(_ path: String) throws -> [UInt8] {
        let file = try FileDescriptor.open(path, O_RDONLY | O_CLOEXEC)
        defer { file.close() }
        return try file.readToEnd()
    }

    static func copy(_ source: String, to destination: String) throws {
        let file = try FileDescriptor.open(destination, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o755)
        defer { file.close() }
        try file.writeAll(try contents(source))
    }
}

/// A directory under /tmp for one benchmark, removed with what it holds.
struct TemporaryDirectory {
    let path: String

    init(prefix: String) throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        guard mkdtemp(&template) != nil else { throw SystemError("mkdtemp", errno: errno, subject: "/tmp/\(prefix)") }
        path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func remove() { try? FileSystem.removeTree(path) }
}
