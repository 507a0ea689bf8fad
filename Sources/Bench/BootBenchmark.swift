import Boot
import Foundation
import HostOS

/// `rund bench boot`: VMM start → guest init running, and VMM peak RSS, for rund and for QEMU's
/// microvm on the same kernel and initramfs, alternating runs.
package enum BootBenchmark {
    package static func measure(
        rund: String, kernel: String, initrd: String, runs: Int, memoryMiB: Int, vcpus: Int,
        qemu: String, timeout: Double
    ) throws -> BootBenchReport {
        let commandLine = try KernelCommandLine.build(extra: "quiet")
        let rundArgv = [
            rund, "vm", "boot", "--kernel", kernel, "--initrd", initrd, "--memory", "\(memoryMiB)",
            "--vcpus", "\(vcpus)", "--cmdline", "quiet", "--console", "-",
        ]
        let qemuArgv = [
            qemu, "-M", "microvm,accel=kvm", "-cpu", "host", "-m", "\(memoryMiB)", "-smp", "\(vcpus)",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel, "-initrd", initrd, "-append", commandLine,
        ]
        var samples: [String: [BootProbe.Sample]] = ["rund": [], "qemu-microvm": []]
        for _ in 0..<runs {
            // Alternate so drift on a noisy machine hits both VMMs alike.
            samples["rund", default: []].append(try BootProbe.measure(rundArgv, timeout: timeout))
            samples["qemu-microvm", default: []].append(try BootProbe.measure(qemuArgv, timeout: timeout))
        }
        return BootBenchReport(runs: runs, memoryMiB: memoryMiB, vcpus: vcpus, samples: samples)
    }
}

package struct BootBenchReport: Encodable {
    struct VMMResult: Encodable {
        let vmm: String
        let bootMillisecondsMedian: Double
        let bootMillisecondsP99: Double
        let bootMilliseconds: [Double]
        let peakRSSMiBMedian: Double
    }

    let runs: Int
    let memoryMiB: Int
    let vcpus: Int
    let results: [VMMResult]
    /// rund median boot time / QEMU microvm median boot time (below 1 means rund is faster).
    let ratio: Double
    let rssRatio: Double

    init(runs: Int, memoryMiB: Int, vcpus: Int, samples: [String: [BootProbe.Sample]]) {
        self.runs = runs
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        results = ["rund", "qemu-microvm"].map { name in
            let list = samples[name] ?? []
            let times = list.map(\.milliseconds)
            return VMMResult(
                vmm: name, bootMillisecondsMedian: Percentile.of(times, fraction: 0.5),
                bootMillisecondsP99: Percentile.of(times, fraction: 0.99), bootMilliseconds: times,
                peakRSSMiBMedian: Percentile.of(list.map(\.peakRSSMiB), fraction: 0.5))
        }
        ratio = results[0].bootMillisecondsMedian / results[1].bootMillisecondsMedian
        rssRatio = results[0].peakRSSMiBMedian / results[1].peakRSSMiBMedian
    }

    package func printTable() {
        print("boot to init, \(runs) runs each, \(memoryMiB) MiB, \(vcpus) vCPU(s)")
        print("vmm            median ms     p99 ms   peak RSS MiB")
        for r in results {
            let name = r.vmm.padding(toLength: 13, withPad: " ", startingAt: 0)
            print(name + String(format: " %10.1f %10.1f %14.1f", r.bootMillisecondsMedian, r.bootMillisecondsP99, r.peakRSSMiBMedian))
        }
        print(String(format: "ratio rund/qemu: boot %.2f, RSS %.2f", ratio, rssRatio))
    }
}

/// Spawns a VMM with its console on a pipe and timestamps the marker line.
package enum BootProbe {
    package static let marker = "rund-init-marker"

    package struct Sample {
        let milliseconds: Double
        let peakRSSMiB: Double
    }

    package static func selfExecutable() throws -> String {
        try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
    }

    /// Time from spawning argv to `marker` on its stdout; the VMM runs on to its own end.
    package static func measure(_ argv: [String], timeout: Double, marker: String = BootProbe.marker) throws -> Sample {
        let pipe = try Pipe.make()
        let start = MonotonicNanoseconds.now()
        let child = try SpawnedProcess.spawn(argv, standardOutput: pipe.write, standardError: nil)
        pipe.write.close()
        var seen: UInt64?
        var buffer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = start + UInt64(timeout * 1e9)
        while MonotonicNanoseconds.now() < deadline {
            guard try pipe.read.waitReadable(milliseconds: 200) else { continue }
            let n = try chunk.withUnsafeMutableBytes { try pipe.read.read(into: $0) }
            if n == 0 { break }
            buffer.append(contentsOf: chunk[0..<n])
            if seen == nil, buffer.firstRange(of: Array(marker.utf8)) != nil { seen = MonotonicNanoseconds.now() }
            if buffer.count > 1 << 20 { buffer.removeFirst(buffer.count - 4096) }
        }
        if seen == nil { child.kill() }
        let usage = try child.waitWithUsage()
        guard let seen else {
            let tail = String(decoding: buffer.suffix(400), as: UTF8.self)
            throw BenchError(
                "\(argv[0]) never printed '\(marker)' (exit \(usage.status)); console tail: \(tail.replacingOccurrences(of: "\n", with: " | "))"
            )
        }
        return Sample(milliseconds: Double(seen - start) / 1e6, peakRSSMiB: Double(usage.peakRSSKiB) / 1024)
    }

    /// Time from spawning argv to the guest accepting a vsock connection on `cid`:`port` (a VMM
    /// with vhost-vsock), tried every 5 ms; the VMM is killed there. Its console and messages are
    /// drained meanwhile and show in the error when it never answers.
    package static func measureUntilVsockAccept(
        _ argv: [String], timeout: Double, cid: UInt32, port: UInt32
    ) throws -> Sample {
        let pipe = try Pipe.make()
        let start = MonotonicNanoseconds.now()
        let child = try SpawnedProcess.spawn(argv, standardOutput: pipe.write, standardError: pipe.write)
        pipe.write.close()
        var seen: UInt64?
        var tail: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        var lastError = "no attempt"
        let deadline = start + UInt64(timeout * 1e9)
        var outputOpen = true  // Its end means the VMM has gone.
        while seen == nil, outputOpen, MonotonicNanoseconds.now() < deadline {
            while outputOpen, try pipe.read.waitReadable(milliseconds: 0) {
                let n = try chunk.withUnsafeMutableBytes { try pipe.read.read(into: $0) }
                if n == 0 { outputOpen = false }
                tail = Array((tail + chunk[0..<n]).suffix(400))
            }
            do {
                _ = try VsockSocket.connect(cid: cid, port: port, timeoutMilliseconds: 50)
                seen = MonotonicNanoseconds.now()
            } catch {
                lastError = "\(error)"
                usleep(5_000)
            }
        }
        child.kill()
        let usage = try child.waitWithUsage()
        guard let seen else {
            let console = String(decoding: tail, as: UTF8.self).replacingOccurrences(of: "\n", with: " | ")
            throw BenchError(
                "\(argv[0])'s guest never accepted on vsock \(cid):\(port) (last: \(lastError); exit \(usage.status)); console tail: \(console)"
            )
        }
        return Sample(milliseconds: Double(seen - start) / 1e6, peakRSSMiB: Double(usage.peakRSSKiB) / 1024)
    }
}
