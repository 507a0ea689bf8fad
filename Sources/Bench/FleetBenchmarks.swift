#if canImport(Glibc)
import Glibc
#endif
import Foundation
import HostOS
import Sandbox
import Synchronization

/// `rund bench density`: N idle sandboxes, cold-booted and then cloned from one template, and
/// what they cost in memory once all are up.
package enum DensityBenchmark {
    /// `starts`: which kinds of sandboxes, each in its own round per count. `read`: a directory
    /// of the image whose every file each sandbox reads once before it idles.
    package static func measure(
        rund: String, root: String, image: String, counts: [Int], memoryMiB: Int, vcpus: Int, template given: String?,
        starts: [FleetStart] = [.cold, .clone], read: String? = nil, balloon: Bool = true, reclaimIdleSeconds: Int? = nil,
        reclaimIdleBy: IdleReclaimMethod = .cache, smallGuestPages: Bool = false
    ) throws -> DensityReport {
        // The directory goes in as the script's $1: never spliced into shell text.
        let command =
            read.map { ["sh", "-c", "cat $(find \"$1\" -type f) >/dev/null && echo ready && exec sleep 100000", "sh", $0] }
            ?? ["sh", "-c", "echo ready; exec sleep 100000"]
        let rows = try SandboxFleet.rounds(
            rund: rund, root: root, image: image, counts: counts, memoryMiB: memoryMiB, vcpus: vcpus, template: given, starts: starts,
            extraArguments: (balloon ? [] : ["--test-hook", "no-balloon"])
                + (reclaimIdleSeconds.map { ["--reclaim-idle", "\($0)", "--reclaim-idle-by", reclaimIdleBy.rawValue] } ?? [])
                + (smallGuestPages ? ["--small-guest-pages"] : [])
        ) { fleet, start, count, members -> DensityReport.Row in
            let began = ContinuousClock.now
            for _ in 0..<count {
                // Idle: prints once its process runs (and has read `read`), then sleeps until stopped.
                members.append(try fleet.spawn(start, command: command))
            }
            // A sandbox that fails to start is counted and left out of the sums, not the end of the run.
            var up: [SandboxFleet.Member] = []
            var failures: [String] = []
            for member in members {
                do {
                    try SandboxFleet.waitForLine("ready", from: member, within: .seconds(1800))
                    up.append(member)
                } catch {
                    failures.append("\(error)")
                }
            }
            let allUp = ContinuousClock.now - began
            // A moment for the guests to settle (page cache, agent) before measuring; with
            // --reclaim-idle, for each to go idle and drop its caches (reported 2 s later) or
            // fill its balloon (slowly when ten guests share the rig's emulated cores) and take
            // its reserve back.
            sleep(UInt32(2 + (reclaimIdleSeconds.map { $0 + 40 } ?? 0)))
            let memory = try up.map { try ProcessMemory(pid: $0.process.pid, guestMappingKiB: memoryMiB * 1024) }
            return DensityReport.Row(
                start: start, sandboxes: up.count, failures: failures, allUpMs: allUp.milliseconds, total: memory.reduce(ProcessMemory(), +)
            )
        }
        return DensityReport(
            image: image, memoryMiB: memoryMiB, vcpus: vcpus, read: read, balloon: balloon, reclaimIdleSeconds: reclaimIdleSeconds,
            reclaimIdleBy: reclaimIdleSeconds == nil ? nil : reclaimIdleBy, smallGuestPages: smallGuestPages, rows: rows)
    }
}

package struct DensityReport: Encodable {
    struct Row: Encodable {
        let start: FleetStart
        /// Sandboxes up and measured (those that failed to start are in `failures`).
        let sandboxes: Int
        let failures: [String]
        let allUpMs: Double
        let total: ProcessMemory
        var pssPerSandboxMiB: Double { Double(total.guestPssKiB + total.imagePssKiB + total.otherPssKiB) / 1024 / Double(sandboxes) }
        /// The image mapping (pmem): its PSS per sandbox falls as 1/N when N sandboxes share it.
        var imagePssPerSandboxMiB: Double { Double(total.imagePssKiB) / 1024 / Double(sandboxes) }
        var privatePerSandboxMiB: Double { Double(total.guestPrivateKiB + total.otherPrivateKiB) / 1024 / Double(sandboxes) }
        var guestPssPerSandboxMiB: Double { Double(total.guestPssKiB) / 1024 / Double(sandboxes) }
        var guestPrivatePerSandboxMiB: Double { Double(total.guestPrivateKiB) / 1024 / Double(sandboxes) }
        var guestAnonymousPerSandboxMiB: Double { Double(total.guestAnonymousKiB) / 1024 / Double(sandboxes) }
        /// The VMM's own cost: everything of the rund process but guest RAM.
        var vmmPssPerSandboxMiB: Double { Double(total.otherPssKiB) / 1024 / Double(sandboxes) }
        var vmmPrivatePerSandboxMiB: Double { Double(total.otherPrivateKiB) / 1024 / Double(sandboxes) }

        enum CodingKeys: String, CodingKey {
            case start, sandboxes, failures, allUpMs, total, pssPerSandboxMiB, privatePerSandboxMiB, guestPssPerSandboxMiB
            case imagePssPerSandboxMiB, guestPrivatePerSandboxMiB, guestAnonymousPerSandboxMiB
            case vmmPssPerSandboxMiB, vmmPrivatePerSandboxMiB
        }

        func encode(to encoder: any Encoder) throws {
            var container = encoder.container(keyedBy: CodingKeys.self)
            try container.encode(start, forKey: .start)
            try container.encode(sandboxes, forKey: .sandboxes)
            try container.encode(failures, forKey: .failures)
            try container.encode(allUpMs, forKey: .allUpMs)
            try container.encode(total, forKey: .total)
            try container.encode(pssPerSandboxMiB, forKey: .pssPerSandboxMiB)
            try container.encode(privatePerSandboxMiB, forKey: .privatePerSandboxMiB)
            try container.encode(guestPssPerSandboxMiB, forKey: .guestPssPerSandboxMiB)
            try container.encode(guestPrivatePerSandboxMiB, forKey: .guestPrivatePerSandboxMiB)
            try container.encode(guestAnonymousPerSandboxMiB, forKey: .guestAnonymousPerSandboxMiB)
            try container.encode(imagePssPerSandboxMiB, forKey: .imagePssPerSandboxMiB)
            try container.encode(vmmPssPerSandboxMiB, forKey: .vmmPssPerSandboxMiB)
            try container.encode(vmmPrivatePerSandboxMiB, forKey: .vmmPrivatePerSandboxMiB)
        }
    }

    let image: String
    let memoryMiB: Int
    let vcpus: Int
    let read: String?
    /// Free page reporting on (a balloon in every cold-booted VM, the default) or off.
    let balloon: Bool
    /// Each sandbox gave its idle memory back after this many quiet seconds (`rund run
    /// --reclaim-idle`), in this way.
    let reclaimIdleSeconds: Int?
    let reclaimIdleBy: IdleReclaimMethod?
    /// Cold boots' guest RAM in 4 KiB host pages (`rund run --small-guest-pages`).
    let smallGuestPages: Bool
    let rows: [Row]

    package var text: String {
        var lines = [
            "idle sandboxes of \(image), \(memoryMiB) MiB, \(vcpus) vCPU(s)"
                + (read.map { ", each having read every file under \($0)" } ?? "")
                + (balloon ? "" : ", no balloon (free page reporting off)")
                + (reclaimIdleSeconds.map { ", idle memory reclaimed after \($0) s" } ?? "")
                + (reclaimIdleBy.map { $0 == .cache ? " (page cache dropped)" : " (balloon inflated)" } ?? "")
                + (smallGuestPages ? ", cold boots' RAM in 4 KiB pages" : "")
                + "; per sandbox, MiB (rund processes, /proc/PID/smaps)",
            "start     up failed   all-up s      PSS  private  guest PSS  guest private  guest anon  image PSS  VMM PSS  VMM private",
        ]
        for row in rows {
            lines.append(
                row.start.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)
                    + String(
                        format: " %5d %6d %10.1f %8.1f %8.1f %10.1f %14.1f %11.1f %10.1f %8.1f %12.1f", row.sandboxes,
                        row.failures.count, row.allUpMs / 1000, row.pssPerSandboxMiB, row.privatePerSandboxMiB,
                        row.guestPssPerSandboxMiB, row.guestPrivatePerSandboxMiB, row.guestAnonymousPerSandboxMiB,
                        row.imagePssPerSandboxMiB, row.vmmPssPerSandboxMiB, row.vmmPrivatePerSandboxMiB))
        }
        for row in rows {
            for failure in row.failures {
                lines.append("failed to start (\(row.start.rawValue), \(row.sandboxes + row.failures.count) at once): \(failure)")
            }
        }
        return lines.joined(separator: "\n")
    }
}

/// `rund bench concurrency`: N sandboxes started at once, cold and cloned, each running a
/// command to its end; start latency is spawn to exit of each `rund run`.
package enum ConcurrencyBenchmark {
    package static func measure(
        rund: String, root: String, image: String, counts: [Int], memoryMiB: Int, vcpus: Int, template given: String?
    ) throws -> ConcurrencyReport {
        let rows = try SandboxFleet.rounds(
            rund: rund, root: root, image: image, counts: counts, memoryMiB: memoryMiB, vcpus: vcpus, template: given
        ) { fleet, start, count, members -> ConcurrencyReport.Row in
            let began = ContinuousClock.now
            for _ in 0..<count { members.append(try fleet.spawn(start, command: ["true"])) }
            // One waiting thread per sandbox, so each exit is timed when it happens.
            let finished = Mutex<[(latencyMs: Double, failed: Bool)]>([])
            let spawned = members
            try ThreadGroup.run(count: spawned.count) { index in
                let status = (try? spawned[index].process.wait()) ?? -1
                let latency = (ContinuousClock.now - spawned[index].spawnedAt).milliseconds
                finished.withLock { $0.append((latency, status != 0)) }
            }
            let makespan = (ContinuousClock.now - began).milliseconds
            let results = finished.withLock { $0 }
            let latencies = results.map(\.latencyMs)
            return ConcurrencyReport.Row(
                start: start, sandboxes: count, failures: results.filter(\.failed).count, makespanMs: makespan,
                startsPerSecond: Double(count) / (makespan / 1000),
                latencyMsMedian: Percentile.of(latencies, fraction: 0.5), latencyMsP99: Percentile.of(latencies, fraction: 0.99))
        }
        return ConcurrencyReport(
            image: image, memoryMiB: memoryMiB, vcpus: vcpus, cores: Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), rows: rows)
    }
}

package struct ConcurrencyReport: Encodable {
    struct Row: Encodable {
        let start: FleetStart
        let sandboxes: Int
        let failures: Int
        let makespanMs: Double
        let startsPerSecond: Double
        let latencyMsMedian: Double
        let latencyMsP99: Double
    }

    let image: String
    let memoryMiB: Int
    let vcpus: Int
    /// Host CPUs online: starts per second per core divides by this.
    let cores: Int
    let rows: [Row]

    package var text: String {
        var lines = [
            "sandboxes of \(image) started at once (`rund run ... -- true`), \(memoryMiB) MiB, \(vcpus) vCPU(s), on \(cores) core(s)",
            "start  count  failed  makespan s  starts/s  starts/s/core  latency p50 ms  p99 ms",
        ]
        for row in rows {
            lines.append(
                row.start.rawValue.padding(toLength: 6, withPad: " ", startingAt: 0)
                    + String(
                        format: " %5d %7d %11.1f %9.2f %14.3f %15.0f %7.0f", row.sandboxes, row.failures, row.makespanMs / 1000,
                        row.startsPerSecond, row.startsPerSecond / Double(cores), row.latencyMsMedian, row.latencyMsP99))
        }
        return lines.joined(separator: "\n")
    }
}
