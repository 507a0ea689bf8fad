import ArgumentParser
import Sandbox
import Testing
@testable import Bench
@testable import rund

/// `rund bench run`'s arguments and its phase table (median and p99 per phase, per-run totals).
/// The measurement itself runs in the rig (scripts/bench-run); it is not a timed test.
struct BenchRunTests {
    @Test func defaultsToFiveRunsOfBinTrue() throws {
        let bench = try BenchRun.parse(["--image", "busybox:1"])
        #expect(bench.runs == 5)
        #expect(bench.argv == ["/bin/true"])
        #expect(try BenchRun.parse(["--image", "busybox:1", "--", "sh", "-c", "exit 0"]).argv == ["sh", "-c", "exit 0"])
    }

    @Test(arguments: [
        (["--runs", "0"], "--runs must be at least 1"),
        (["--memory", "8"], "--memory must be at least"),
        (["--vcpus", "0"], "--vcpus must be between 1 and"),
        (["--timeout", "0"], "--timeout must be 0.1 to 86400"), (["--timeout", "inf"], "--timeout must be 0.1 to 86400"),
    ])
    func rejectsBadNumbers(arguments: [String], message: String) {
        #expect { try BenchRun.parse(["--image", "busybox:1"] + arguments) } throws: { error in
            BenchRun.message(for: error).contains(message)
        }
    }

    @Test func kernelsAreAListOfRundAndStock() throws {
        #expect(try BenchRun.parse(["--image", "busybox:1"]).kernels == nil)
        #expect(try BenchRun.parse(["--image", "busybox:1", "--kernel", "rund,stock"]).kernels == [.rund, .stock])
        #expect(try BenchRun.parse(["--image", "busybox:1", "--kernel", "stock"]).kernels == [.stock])
        for bad in ["rund,", "debian", "rund,rund", ""] {
            #expect { try BenchRun.parse(["--image", "busybox:1", "--kernel", bad]) } throws: { error in
                BenchRun.message(for: error).contains("--kernel takes rund and stock")
            }
        }
    }

    @Test func needsAnImage() {
        #expect { try BenchRun.parse([]) } throws: { BenchRun.message(for: $0).contains("--image") }
    }

    /// Five runs; each phase's values are a permutation of known ones so median and p99 are known.
    static let table: PhaseTable = {
        let values: [[Double]] = [[5, 1, 3, 2, 4], [10, 30, 20, 50, 40], [1, 1, 1, 1, 9]]
        var rows: [[SandboxPhase: Double]] = Array(repeating: [:], count: 5)
        for (index, phase) in SandboxPhase.allCases.enumerated() {
            for run in 0..<5 { rows[run][phase] = values[index % values.count][run] }
        }
        return PhaseTable(rows: rows)
    }()

    @Test func medianAndP99PerPhase() throws {
        let figures = Self.table.figures
        #expect(figures.map(\.phase) == SandboxPhase.allCases.map(\.rawValue) + ["total", "vm-create+kernel-boot"])
        let prepare = try #require(Self.table.figures("prepare"))
        #expect(prepare.medianMs == 3 && prepare.p99Ms == 5 && prepare.ms == [5, 1, 3, 2, 4])
        let cgroup = try #require(Self.table.figures("cgroup"))
        #expect(cgroup.medianMs == 30 && cgroup.p99Ms == 50)
        let writable = try #require(Self.table.figures("writable-layer"))
        #expect(writable.medianMs == 1 && writable.p99Ms == 9)
    }

    /// Totals are summed per run and then summarised: the median run's total, not a sum of medians.
    @Test func totalsAreSummedPerRunFirst() throws {
        // Phase i takes values[i % 3]; nine phases, so each list counts three times.
        let perRun = (0..<5).map { run in 3 * ([5.0, 1, 3, 2, 4][run] + [10.0, 30, 20, 50, 40][run] + [1.0, 1, 1, 1, 9][run]) }
        let total = try #require(Self.table.figures("total"))
        #expect(total.ms == perRun)
        #expect(total.medianMs == 96 && total.p99Ms == 159)  // runs: 48, 96, 72, 159, 159
        let sumOfMedians = SandboxPhase.allCases.compactMap { Self.table.figures($0.rawValue)?.medianMs }.reduce(0, +)
        #expect(sumOfMedians != total.medianMs)
        // vm-create is phase 3 (values[0]), kernel-boot phase 4 (values[1]).
        let boot = try #require(Self.table.figures("vm-create+kernel-boot"))
        #expect(boot.ms == [15, 31, 23, 52, 44] && boot.medianMs == 31 && boot.p99Ms == 52)
    }

    @Test func aMissingPhaseMakesThatRunsTotalUnknown() throws {
        var rows = Self.table.rows
        rows[0][.exit] = nil
        let total = try #require(PhaseTable(rows: rows).figures("total"))
        #expect(total.ms[0].isNaN && !total.ms[1].isNaN)
    }

    /// With both kernels measured, the report compares rund's with the stock one, median to median.
    @Test func twoKernelsAreComparedMedianToMedian() throws {
        func figures(_ kernel: GuestKernel, kernelBootMs: Double, usedMiB: Double) -> RunBenchReport.KernelFigures {
            var rows: [[SandboxPhase: Double]] = Array(repeating: [:], count: 3)
            for run in 0..<3 {
                for phase in SandboxPhase.allCases { rows[run][phase] = 10 }
                rows[run][.kernelBoot] = kernelBootMs + Double(run)
            }
            return RunBenchReport.KernelFigures(
                kernel: kernel, version: kernel.rawValue, bzImageBytes: 1, bootImage: "vmlinuz", bootImageBytes: 1, initramfsBytes: 2,
                guestMemoryUsedMiB: usedMiB,
                table: PhaseTable(rows: rows), qemu: [.init(milliseconds: 100, peakRSSMiB: 1)], qemuDevices: [], peakRSSMiB: [],
                peakRSSPerRun: true)
        }
        let report = RunBenchReport(
            image: "i", command: ["true"], runs: 3, memoryMiB: 256, vcpus: 1,
            kernels: [figures(.rund, kernelBootMs: 99, usedMiB: 15), figures(.stock, kernelBootMs: 299, usedMiB: 60)])
        let comparison = try #require(report.rundKernelOverStock)
        #expect(comparison.kernelBootRatio == 100.0 / 300.0)
        #expect(comparison.vmCreateKernelBootRatio == 110.0 / 310.0)
        #expect(comparison.guestMemoryUsedRatio == 0.25)
        #expect(report.text.contains("rund's kernel / stock kernel (medians): kernel-boot 0.33"))
        #expect(
            RunBenchReport(
                image: "i", command: [], runs: 3, memoryMiB: 256, vcpus: 1, kernels: [figures(.rund, kernelBootMs: 1, usedMiB: 1)]
            ).rundKernelOverStock == nil)
    }

    @Test func peakRSSIsReadFromVmHWM() {
        #expect(PeakRSS.mebibytes(status: "Name:\trund\nVmPeak:\t  900 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1024 kB\n") == 2)
        #expect(PeakRSS.mebibytes(status: "Name:\trund\n") == nil)
        #expect(PeakRSS.mebibytes() ?? 0 > 0)
    }
}
