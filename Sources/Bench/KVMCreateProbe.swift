import Cgroups
import HostOS
import KVM

#if canImport(Glibc)
import Glibc
#endif

/// Times KVM_CREATE_VM from a process inside a pooled cgroup versus one outside (Firecracker
/// issue 2129: ~27 ms inside cgroups on some kernels). The process is `rund` itself, started
/// with the hidden `--kvm-probe N`: it waits for a byte on stdin (sent once it sits where it
/// should), creates and closes N VMs and prints each creation time in nanoseconds.
package enum KVMCreateProbe {
    struct Side: Encodable {
        let p50Ms: Double
        let p99Ms: Double
    }

    struct Comparison: Encodable {
        let samples: Int
        let outside: Side?
        let inside: Side?
        /// inside p50 / outside p50.
        let ratio: Double?
        let skipped: String?

        var line: String {
            guard let outside, let inside, let ratio else { return "KVM_CREATE_VM: skipped (\(skipped ?? "unknown"))" }
            return "KVM_CREATE_VM (\(samples) each): outside p50 \(fixed(outside.p50Ms, 3)) ms p99 \(fixed(outside.p99Ms, 3)) ms; "
                + "inside a pooled cgroup p50 \(fixed(inside.p50Ms, 3)) ms p99 \(fixed(inside.p99Ms, 3)) ms; inside/outside \(fixed(ratio, 2))x"
        }
    }

    /// Never throws: a host without usable KVM gets a `skipped` reason instead.
    static func compare(pool: CgroupPool, samples: Int, limits: CgroupLimits) -> Comparison {
        do {
            _ = try KVMSystem()
            let outside = try probe(samples: samples, lease: nil)
            let lease = try pool.take(sandboxID: "kvm-probe", limits: limits)
            defer { try? lease.release() }
            let inside = try probe(samples: samples, lease: lease)
            let ratio = Double(CgroupChurn.percentile(inside, 0.5)) / Double(max(1, CgroupChurn.percentile(outside, 0.5)))
            return Comparison(samples: samples, outside: side(outside), inside: side(inside), ratio: ratio, skipped: nil)
        } catch {
            return Comparison(samples: samples, outside: nil, inside: nil, ratio: nil, skipped: "\(error)")
        }
    }

    /// The child's side: wait for the go byte, create VMs, print times.
    package static func runAsChild(samples: Int) throws {
        var go: UInt8 = 0
        guard read(0, &go, 1) == 1 else { throw CgroupError("kvm probe: no start signal on stdin") }
        let kvm = try KVMSystem()
        var times: [UInt64] = []
        for _ in 0..<samples {
            let start = MonotonicNanoseconds.now()
            let vm = try kvm.createVirtualMachine()
            times.append(MonotonicNanoseconds.now() - start)
            _ = vm
        }
        print(times.map(String.init).joined(separator: "\n"))
    }

    private static func probe(samples: Int, lease: CgroupLease?) throws -> [UInt64] {
        let gate = try Pipe.make()
        let output = try Pipe.make()
        let child = try SpawnedProcess.spawn(
            [try executablePath(), "bench", "cgroups", "--kvm-probe", "\(samples)"],
            standardInput: gate.read, standardOutput: output.write)
        gate.read.close()
        output.write.close()
        do {
            try lease?.attach(pid: child.pid)
            try gate.write.writeAll("g")
        } catch {
            child.kill()
            _ = try? child.wait()
            throw error
        }
        gate.write.close()
        let text = String(decoding: try output.read.readToEnd(), as: UTF8.self)
        let status = try child.wait()
        let times = text.split(separator: "\n").compactMap { UInt64($0) }.sorted()
        guard status == 0, times.count == samples else {
            throw CgroupError("kvm probe exited with status \(status) after \(times.count) of \(samples) VMs")
        }
        return times
    }

    private static func side(_ sorted: [UInt64]) -> Side {
        Side(p50Ms: Double(CgroupChurn.percentile(sorted, 0.5)) / 1e6, p99Ms: Double(CgroupChurn.percentile(sorted, 0.99)) / 1e6)
    }

    private static func executablePath() throws -> String {
        var buffer = [CChar](repeating: 0, count: 4096)
        let length = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        guard length > 0 else { throw SystemError.last("readlink", subject: "/proc/self/exe") }
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
