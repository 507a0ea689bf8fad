import Boot
import Foundation
import HostOS
import Sandbox
import Storage
import VMM

/// `rund bench run`: one command end to end through the real Sandbox, N times, split into
/// phases; beside it QEMU's microvm booting the same kernel and guest initramfs to the same
/// agent, alternating with the sandbox runs. With several guest kernels, each run index boots
/// each kernel in turn, so drift hits them alike.
package enum RunBenchmark {
    package static func measure(
        root: String, agentPath: String, image: String, command: [String], runs: Int, memoryMiB: Int,
        vcpus: Int, qemu: String, timeout: Double, kernels: [GuestKernel]
    ) async throws -> RunBenchReport {
        let argv = command
        let writableSizeMiB = SandboxSpec(id: "x", image: image).writableSizeMiB
        // Caches a first run would build, made outside the timings.
        _ = try WritableLayers(root: root).templatePath(sizeMiB: writableSizeMiB)
        let imagePath = try ImageStore(root: root).lookup(reference: image).erofsPath
        var subjects: [Subject] = []
        for kernel in kernels {
            subjects.append(
                try Subject(
                    kernel: kernel, root: root, agentPath: agentPath, qemu: qemu, image: imagePath,
                    scratchMiB: writableSizeMiB, memoryMiB: memoryMiB, vcpus: vcpus))
        }
        defer { for subject in subjects { subject.peer.removeScratch() } }

        for index in 0..<runs {
            for subject in subjects {
                // Alternate so drift on a noisy machine hits both alike.
                let perRun = PeakRSS.reset()
                let phases = SandboxPhaseRecorder()
                let spec = SandboxSpec(
                    id: "bench-\(getpid())-\(subject.kernel.rawValue)-\(index)", image: image, command: argv,
                    memoryMiB: memoryMiB, vcpuCount: vcpus)
                let status = try await subject.sandbox.run(spec: spec, phases: phases) { _, _ in }.status
                guard status == 0 else {
                    throw BenchError(
                        "`\(argv.joined(separator: " "))` exited with status \(status) in the sandbox; bench a command that succeeds")
                }
                subject.table.append(try phases.durations())
                subject.peakRSSPerRun = perRun && subject.peakRSSPerRun
                if let peak = PeakRSS.mebibytes() { subject.peakRSS.append(peak) }
                // A peer that fails to boot a kernel is a result of the comparison, not the end of it.
                do {
                    subject.qemuSamples.append(
                        try BootProbe.measureUntilVsockAccept(
                            subject.peer.argv, timeout: timeout, cid: subject.peer.guestCID, port: Sandbox.agentPort))
                } catch {
                    subject.qemuFailures.append("\(error)")
                }
            }
        }
        // Untimed: the guest's memory in use once booted, before the process starts.
        for subject in subjects {
            let spec = SandboxSpec(
                id: "bench-\(getpid())-\(subject.kernel.rawValue)-memory", image: image, command: argv,
                memoryMiB: memoryMiB, vcpuCount: vcpus)
            let running = try await subject.sandbox.create(spec)
            do {
                let memory = try await running.guestStats().memory
                subject.guestMemoryUsedMiB = Double(memory.usageBytes) / 1_048_576
                _ = try await running.start()
                _ = try await running.waitWithOutput { _, _ in }
                await running.shutdown()
            } catch {
                running.release()
                throw error
            }
        }
        return RunBenchReport(
            image: image, command: argv, runs: runs, memoryMiB: memoryMiB, vcpus: vcpus,
            kernels: subjects.map(\.figures))
    }

    /// One guest kernel's sandbox, peer and results.
    private final class Subject {
        let kernel: GuestKernel
        let version: String
        let sandbox: Sandbox
        let peer: QEMUPeer
        let bzImageBytes: Int64
        let bootImage: String
        let bootImageBytes: Int64
        let initramfsBytes: Int64
        let agentImageBytes: Int64?
        var table = PhaseTable()
        var peakRSS: [Double] = []
        var peakRSSPerRun = true
        var qemuSamples: [BootProbe.Sample] = []
        var qemuFailures: [String] = []
        var guestMemoryUsedMiB: Double?

        init(
            kernel: GuestKernel, root: String, agentPath: String, qemu: String, image: String, scratchMiB: Int,
            memoryMiB: Int, vcpus: Int
        ) throws {
            self.kernel = kernel
            let directory = try GuestKernel.directory(stateRoot: root, choice: kernel)
            version =
                (try? FileDescriptor.open(directory + "/version", O_RDONLY | O_CLOEXEC).readToEnd(limit: 4096))
                .map { String(decoding: $0, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines) } ?? "unknown"
            // The initramfs a cold-booted sandbox carries (with the pmem and balloon drivers when
            // they are modules), built now so that no run pays for it.
            let device: RootfsDevice = GuestInitramfs.pmemUnsupportedReason(kernelDirectory: directory) == nil ? .pmem : .blk
            let sandboxInitramfs = try GuestInitramfs.path(
                stateRoot: root, kernelDirectory: directory, agentPath: agentPath,
                modules: GuestInitramfs.sandboxModules(imageOn: device))
            let peerInitramfs = try GuestInitramfs.path(stateRoot: root, kernelDirectory: directory, agentPath: agentPath)
            bzImageBytes = Int64(try FileSystem.status(at: nil, directory + "/vmlinuz")?.st_size ?? 0)
            let booted = GuestKernel.bootImage(in: directory)
            bootImage = String(booted.split(separator: "/").last ?? "")
            bootImageBytes = Int64(try FileSystem.status(at: nil, booted)?.st_size ?? 0)
            // With a kernel that can, a pmem sandbox boots from the agent image instead (no initramfs).
            let agentImagePath: String?
            if device == .pmem, GuestAgentImage.usable(kernelDirectory: directory) {
                let agentImage = try GuestAgentImage.path(stateRoot: root, agentPath: agentPath)
                agentImagePath = agentImage
                agentImageBytes = Int64(try FileSystem.status(at: nil, agentImage)?.st_size ?? 0)
                initramfsBytes = 0
            } else {
                agentImagePath = nil
                agentImageBytes = nil
                initramfsBytes = Int64(try FileSystem.status(at: nil, sandboxInitramfs)?.st_size ?? 0)
            }
            peer = try QEMUPeer(
                qemu: qemu, kernel: directory + "/vmlinuz",
                boot: agentImagePath.map { .agentImage($0) } ?? .initramfs(peerInitramfs), image: image,
                scratch: root + "/bench-run-\(getpid())-\(kernel.rawValue).img", scratchMiB: scratchMiB,
                memoryMiB: memoryMiB, vcpus: vcpus)
            // One sandbox at a time in this process, as in `rund run`: on cgroup v2 the process joins each.
            sandbox = Sandbox(stateRoot: root, agentPath: agentPath, soleSandboxInProcess: true, kernel: kernel)
        }

        var figures: RunBenchReport.KernelFigures {
            RunBenchReport.KernelFigures(
                kernel: kernel, version: version, bzImageBytes: bzImageBytes, bootImage: bootImage,
                bootImageBytes: bootImageBytes, initramfsBytes: initramfsBytes,
                agentImageBytes: agentImageBytes, guestMemoryUsedMiB: guestMemoryUsedMiB, table: table, qemu: qemuSamples,
                qemuFailures: qemuFailures,
                qemuDevices: peer.devices,
                peakRSSMiB: peakRSS, peakRSSPerRun: peakRSSPerRun)
        }
    }
}

/// Per-run phase durations (milliseconds) and their median and p99 (nearest rank), plus two
/// derived rows: the total and vm-create + kernel-boot (the span comparable with QEMU's boot).
package struct PhaseTable {
    static let total = "total"
    static let vmCreateAndKernelBoot = "vm-create+kernel-boot"

    struct Figures: Encodable, Equatable {
        let phase: String
        let medianMs: Double
        let p99Ms: Double
        let ms: [Double]
    }

    private(set) var rows: [[SandboxPhase: Double]] = []

    init(rows: [[SandboxPhase: Double]] = []) { self.rows = rows }

    mutating func append(_ nanoseconds: [SandboxPhase: UInt64]) {
        rows.append(nanoseconds.mapValues { Double($0) / 1e6 })
    }

    /// One run's sum over `phases` (a phase missing from the run counts as NaN, not 0).
    static func sum(_ row: [SandboxPhase: Double], _ phases: [SandboxPhase]) -> Double {
        phases.reduce(0) { $0 + (row[$1] ?? .nan) }
    }

    /// Every phase in order, then the total and vm-create+kernel-boot: each summarised per run
    /// first, so the total's median is the median run's total, not a sum of medians.
    var figures: [Figures] {
        var result = SandboxPhase.allCases.map { phase in Self.figures(phase.rawValue, rows.map { $0[phase] ?? .nan }) }
        result.append(Self.figures(Self.total, rows.map { Self.sum($0, SandboxPhase.allCases) }))
        result.append(Self.figures(Self.vmCreateAndKernelBoot, rows.map { Self.sum($0, [.vmCreate, .kernelBoot]) }))
        return result
    }

    func figures(_ name: String) -> Figures? { figures.first { $0.phase == name } }

    static func figures(_ name: String, _ values: [Double]) -> Figures {
        Figures(phase: name, medianMs: Percentile.of(values, fraction: 0.5), p99Ms: Percentile.of(values, fraction: 0.99), ms: values)
    }
}

package struct RunBenchReport: Encodable {
    struct QEMUFigures: Encodable {
        let endPoint: String
        let devices: [String]
        let bootMsMedian: Double
        let bootMsP99: Double
        let bootMs: [Double]
        let peakRSSMiBMedian: Double
        /// Boots that never reached the marker, each with its error.
        let failures: [String]
    }

    /// Everything measured with one guest kernel.
    struct KernelFigures: Encodable {
        let kernel: GuestKernel
        let version: String
        let bzImageBytes: Int64
        /// The file a sandbox boots (`GuestKernel.bootImage`): "vmlinux" (uncompressed) or "vmlinuz".
        let bootImage: String
        let bootImageBytes: Int64
        /// The cold-booted sandbox's initramfs: the agent plus the kernel modules it loads (0
        /// when it boots from the agent image).
        let initramfsBytes: Int64
        /// The agent's root image a pmem sandbox of this kernel boots from (`GuestAgentImage`),
        /// mapped with DAX rather than copied into the guest; nil: it boots from the initramfs.
        let agentImageBytes: Int64?
        /// MemTotal - MemAvailable as the agent reports it once booted (one untimed run).
        let guestMemoryUsedMiB: Double?
        let phases: [PhaseTable.Figures]
        let qemu: QEMUFigures
        /// rund kernel-boot median / QEMU boot median (QEMU's includes its process start and VM build).
        let kernelBootRatio: Double
        /// rund vm-create+kernel-boot median / QEMU boot median: the like-for-like span.
        let vmCreateKernelBootRatio: Double
        /// One per run (none where /proc/self/status could not be read).
        let peakRSSMiB: [Double]
        let peakRSSMiBMax: Double?
        /// false: VmHWM could not be reset, so each figure is the process's peak so far.
        let peakRSSPerRun: Bool

        init(
            kernel: GuestKernel, version: String, bzImageBytes: Int64, bootImage: String, bootImageBytes: Int64,
            initramfsBytes: Int64, agentImageBytes: Int64? = nil,
            guestMemoryUsedMiB: Double?,
            table: PhaseTable, qemu samples: [BootProbe.Sample], qemuFailures: [String] = [], qemuDevices: [String],
            peakRSSMiB: [Double],
            peakRSSPerRun: Bool
        ) {
            self.kernel = kernel
            self.version = version
            self.bzImageBytes = bzImageBytes
            self.bootImage = bootImage
            self.bootImageBytes = bootImageBytes
            self.initramfsBytes = initramfsBytes
            self.agentImageBytes = agentImageBytes
            self.guestMemoryUsedMiB = guestMemoryUsedMiB
            phases = table.figures
            let boot = samples.map(\.milliseconds)
            qemu = QEMUFigures(
                endPoint: "spawn to the agent accepting on vsock", devices: qemuDevices,
                bootMsMedian: Percentile.of(boot, fraction: 0.5), bootMsP99: Percentile.of(boot, fraction: 0.99),
                bootMs: boot, peakRSSMiBMedian: Percentile.of(samples.map(\.peakRSSMiB), fraction: 0.5),
                failures: qemuFailures)
            kernelBootRatio = (table.figures(SandboxPhase.kernelBoot.rawValue)?.medianMs ?? .nan) / qemu.bootMsMedian
            vmCreateKernelBootRatio = (table.figures(PhaseTable.vmCreateAndKernelBoot)?.medianMs ?? .nan) / qemu.bootMsMedian
            self.peakRSSMiB = peakRSSMiB
            peakRSSMiBMax = peakRSSMiB.max()
            self.peakRSSPerRun = peakRSSPerRun
        }

        func median(_ phase: String) -> Double { phases.first { $0.phase == phase }?.medianMs ?? .nan }
    }

    /// rund's kernel against the stock one, when both were measured: ratios of medians.
    struct KernelComparison: Encodable {
        let kernelBootRatio: Double
        let vmCreateKernelBootRatio: Double
        let guestMemoryUsedRatio: Double?
    }

    let image: String
    let command: [String]
    let runs: Int
    let memoryMiB: Int
    let vcpus: Int
    let build: String
    let kernels: [KernelFigures]
    let rundKernelOverStock: KernelComparison?

    init(image: String, command: [String], runs: Int, memoryMiB: Int, vcpus: Int, kernels: [KernelFigures]) {
        self.image = image
        self.command = command
        self.runs = runs
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        build = BuildConfiguration.name
        self.kernels = kernels
        if let ours = kernels.first(where: { $0.kernel == .rund }), let stock = kernels.first(where: { $0.kernel == .stock }) {
            let kernelBoot = SandboxPhase.kernelBoot.rawValue
            rundKernelOverStock = KernelComparison(
                kernelBootRatio: ours.median(kernelBoot) / stock.median(kernelBoot),
                vmCreateKernelBootRatio: ours.median(PhaseTable.vmCreateAndKernelBoot) / stock.median(PhaseTable.vmCreateAndKernelBoot),
                guestMemoryUsedRatio: ours.guestMemoryUsedMiB.flatMap { used in stock.guestMemoryUsedMiB.map { used / $0 } })
        } else {
            rundKernelOverStock = nil
        }
    }

    package var text: String {
        var lines = ["`\(command.joined(separator: " "))` in \(image): \(runs) runs, \(memoryMiB) MiB, \(vcpus) vCPU(s), \(build) build"]
        for figures in kernels {
            lines.append("")
            lines.append(
                "kernel \(figures.kernel.rawValue) (\(figures.version)): bzImage \(figures.bzImageBytes) bytes, "
                    + (figures.bootImage == "vmlinuz" ? "" : "boots \(figures.bootImage) \(figures.bootImageBytes) bytes, ")
                    + (figures.agentImageBytes.map { "no initramfs (agent image \($0) bytes, DAX root)" }
                        ?? "initramfs \(figures.initramfsBytes) bytes")
                    + ", guest memory in use after boot "
                    + (figures.guestMemoryUsedMiB.map { String(format: "%.1f MiB", $0) } ?? "unknown"))
            lines.append("phase                    median ms     p99 ms")
            for phase in figures.phases {
                lines.append(
                    phase.phase.padding(toLength: 22, withPad: " ", startingAt: 0)
                        + String(format: " %11.1f %10.1f", phase.medianMs, phase.p99Ms))
            }
            lines.append(
                "qemu-microvm boot".padding(toLength: 22, withPad: " ", startingAt: 0)
                    + String(format: " %11.1f %10.1f", figures.qemu.bootMsMedian, figures.qemu.bootMsP99)
                    + "   (\(figures.qemu.endPoint))")
            lines.append("qemu devices: " + figures.qemu.devices.joined(separator: ", "))
            if let first = figures.qemu.failures.first {
                lines.append("qemu-microvm: \(figures.qemu.failures.count) of \(runs) boots failed; the first: \(first)")
            }
            lines.append(
                String(
                    format: "ratio rund/qemu: kernel-boot %.2f, vm-create+kernel-boot %.2f", figures.kernelBootRatio,
                    figures.vmCreateKernelBootRatio))
            let rundPeak =
                figures.peakRSSMiBMax.map {
                    String(format: "max %.1f", $0) + (figures.peakRSSPerRun ? " (per run)" : " (process lifetime)")
                }
                ?? "unknown"
            lines.append("peak RSS MiB: rund " + rundPeak + String(format: ", qemu median %.1f", figures.qemu.peakRSSMiBMedian))
        }
        if let comparison = rundKernelOverStock {
            lines.append("")
            lines.append(
                String(
                    format: "rund's kernel / stock kernel (medians): kernel-boot %.2f, vm-create+kernel-boot %.2f",
                    comparison.kernelBootRatio, comparison.vmCreateKernelBootRatio)
                    + (comparison.guestMemoryUsedRatio.map { String(format: ", guest memory in use %.2f", $0) } ?? ""))
        }
        return lines.joined(separator: "\n")
    }
}

/// QEMU's microvm on the sandbox's kernel and command line, booting the agent as the sandbox
/// does (its EROFS image as the root, or the initramfs), with the image and writable disks.
/// Its end point is the agent accepting a vsock connection (through vhost-vsock), which follows
/// its listen as closely as rund's boot marker does: QEMU has no marker page, and its log of
/// the agent's write to the missing page did not come under QEMU 10.
struct QEMUPeer {
    let argv: [String]
    let devices: [String]
    let scratch: String
    let guestCID: UInt32

    enum Boot {
        case initramfs(String)
        /// The agent's EROFS image on the first virtio-blk disk (no DAX here: QEMU's virtio-pmem
        /// needs PCI, which microvm leaves out).
        case agentImage(String)
    }

    /// `scratch` becomes a sparse file standing in for the writable layer (the guest only probes
    /// its partition table while booting).
    init(
        qemu: String, kernel: String, boot: Boot, image: String, scratch: String, scratchMiB: Int,
        memoryMiB: Int, vcpus: Int
    ) throws {
        guard FileSystem.exists("/dev/vhost-vsock") else {
            throw BenchError("no /dev/vhost-vsock for QEMU's guest: load the vhost_vsock module")
        }
        let file = try FileDescriptor.open(scratch, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o600)
        try FileSystem.truncate(file, size: Int64(scratchMiB) << 20)
        self.scratch = scratch
        // A CID of this process's own, so that a QEMU left over from another run cannot answer.
        guestCID = 1000 + UInt32(getpid())
        var argv = [
            qemu, "-M", "microvm,accel=kvm", "-cpu", "host", "-m", "\(memoryMiB)", "-smp", "\(vcpus)",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-serial", "stdio",
            "-kernel", kernel,
        ]
        var devices: [String] = []
        switch boot {
        case .initramfs(let initrd):
            argv += ["-initrd", initrd, "-append", try KernelCommandLine.build(extra: "quiet")]
        case .agentImage(let agentImage):
            argv += [
                "-append", try KernelCommandLine.build(extra: "quiet root=/dev/vda rootfstype=erofs ro rootwait init=/init"),
                "-drive", "id=agent,file=\(agentImage),format=raw,if=none,readonly=on", "-device", "virtio-blk-device,drive=agent",
            ]
            devices.append("virtio-blk (agent image, the root)")
        }
        argv += [
            "-drive", "id=image,file=\(image),format=raw,if=none,readonly=on", "-device", "virtio-blk-device,drive=image",
            "-drive", "id=writable,file=\(scratch),format=raw,if=none", "-device", "virtio-blk-device,drive=writable",
            "-device", "vhost-vsock-device,guest-cid=\(guestCID)",
        ]
        devices += ["virtio-blk (image, read-only)", "virtio-blk (writable)", "vhost-vsock"]
        self.argv = argv
        self.devices = devices
    }

    func removeScratch() { try? FileSystem.unlink(at: nil, scratch) }
}

/// This process's peak resident set (VmHWM from /proc/self/status).
enum PeakRSS {
    /// Resets VmHWM to the current RSS (writing 5 to clear_refs, Linux 4.0+); false if refused.
    static func reset() -> Bool {
        guard let file = try? FileDescriptor.open("/proc/self/clear_refs", O_WRONLY | O_CLOEXEC) else { return false }
        return (try? file.writeAll("5")) != nil
    }

    static func mebibytes(status: String? = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8)) -> Double? {
        guard let line = status?.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
            let kib = line.split(separator: " ").dropFirst().first.flatMap({ Double($0) })
        else { return nil }
        return kib / 1024
    }
}
