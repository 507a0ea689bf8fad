import Foundation
import HostOS
import Sandbox
import Storage

/// `rund bench clone`: the same sandbox run cold-booted and cloned from a template, alternating,
/// phase by phase. The template is made first (its creation timed once) and removed at the end
/// unless it was given.
package enum CloneBenchmark {
    package static func measure(
        root: String, agentPath: String, image: String, command: [String], runs: Int, memoryMiB: Int, vcpus: Int,
        template given: String?
    ) async throws -> CloneBenchReport {
        let writableSizeMiB = SandboxSpec(id: "x", image: image).writableSizeMiB
        _ = try GuestInitramfs.path(
            stateRoot: root, kernelDirectory: try GuestKernel.directory(stateRoot: root, choice: nil), agentPath: agentPath,
            modules: GuestInitramfs.templateModules)
        _ = try WritableLayers(root: root).templatePath(sizeMiB: writableSizeMiB)
        let sandbox = Sandbox(stateRoot: root, agentPath: agentPath, soleSandboxInProcess: true)
        let name = given ?? "bench-clone-\(getpid())"
        var createMs: Double?
        if given == nil {
            let started = ContinuousClock.now
            _ = try sandbox.createTemplate(name: name, memoryMiB: memoryMiB, vcpuCount: vcpus)
            let took = (ContinuousClock.now - started).components
            createMs = Double(took.seconds) * 1000 + Double(took.attoseconds) / 1e15
        }
        defer { if given == nil { _ = try? TemplateStore(stateRoot: root).remove(name) } }

        var cold = PhaseTable(), clone = PhaseTable()
        for index in 0..<runs {
            // Alternate, so drift on a noisy machine hits both alike.
            for (choice, label) in [(SandboxTemplate.Choice.coldBoot, "cold"), (.named(name), "clone")] {
                let phases = SandboxPhaseRecorder()
                var spec = SandboxSpec(
                    id: "bench-\(label)-\(getpid())-\(index)", image: image, command: command, memoryMiB: memoryMiB, vcpuCount: vcpus)
                spec.template = choice
                let status = try await sandbox.run(spec: spec, phases: phases) { _, _ in }.status
                guard status == 0 else {
                    throw BenchError(
                        "`\(command.joined(separator: " "))` exited with status \(status) in a \(label) sandbox; bench a command that succeeds"
                    )
                }
                if label == "cold" { cold.append(try phases.durations()) } else { clone.append(try phases.durations()) }
            }
        }
        return CloneBenchReport(
            image: image, command: command, runs: runs, memoryMiB: memoryMiB, vcpus: vcpus, templateCreateMs: createMs,
            cold: cold, clone: clone)
    }
}

package struct CloneBenchReport: Encodable {
    static let toAgentReady = "to-agent-ready"

    let image: String
    let command: [String]
    let runs: Int
    let memoryMiB: Int
    let vcpus: Int
    let build: String
    /// How long `template create` took (nil when an existing template was used).
    let templateCreateMs: Double?
    let cold: [PhaseTable.Figures]
    let clone: [PhaseTable.Figures]
    /// vm-create + kernel-boot + agent-ready: from building the VM to an answering agent.
    let coldToAgentReady: PhaseTable.Figures
    let cloneToAgentReady: PhaseTable.Figures
    /// clone / cold, medians: to agent-ready, and for the whole run.
    let agentReadyRatio: Double
    let totalRatio: Double

    init(
        image: String, command: [String], runs: Int, memoryMiB: Int, vcpus: Int, templateCreateMs: Double?,
        cold: PhaseTable, clone: PhaseTable
    ) {
        self.image = image
        self.command = command
        self.runs = runs
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
        build = BuildConfiguration.name
        self.templateCreateMs = templateCreateMs
        self.cold = cold.figures
        self.clone = clone.figures
        let span: [SandboxPhase] = [.vmCreate, .kernelBoot, .agentReady]
        coldToAgentReady = PhaseTable.figures(Self.toAgentReady, cold.rows.map { PhaseTable.sum($0, span) })
        cloneToAgentReady = PhaseTable.figures(Self.toAgentReady, clone.rows.map { PhaseTable.sum($0, span) })
        agentReadyRatio = cloneToAgentReady.medianMs / coldToAgentReady.medianMs
        totalRatio = (clone.figures(PhaseTable.total)?.medianMs ?? .nan) / (cold.figures(PhaseTable.total)?.medianMs ?? .nan)
    }

    package var text: String {
        var lines = [
            "`\(command.joined(separator: " "))` in \(image): \(runs) cold and \(runs) cloned runs, alternating, \(memoryMiB) MiB, \(vcpus) vCPU(s), \(build) build",
            "phase                   cold median   cold p99  clone median  clone p99   (ms)",
        ]
        for (coldRow, cloneRow) in zip(cold + [coldToAgentReady], clone + [cloneToAgentReady]) {
            lines.append(
                coldRow.phase.padding(toLength: 22, withPad: " ", startingAt: 0)
                    + String(format: " %12.1f %10.1f %13.1f %10.1f", coldRow.medianMs, coldRow.p99Ms, cloneRow.medianMs, cloneRow.p99Ms))
        }
        lines.append(String(format: "ratio clone/cold (medians): to agent-ready %.3f, whole run %.3f", agentReadyRatio, totalRatio))
        if let templateCreateMs { lines.append(String(format: "template create: %.1f ms (once)", templateCreateMs)) }
        return lines.joined(separator: "\n")
    }
}
