import Foundation
import HostOS
import Storage

/// `rund bench layers`: how fast a sandbox gets its writable disk (reflink vs full copy vs fresh
/// mkfs.ext4, one at a time and in a burst), and how long one EROFS build of ~100 MB takes.
package enum LayerBenchmark {
    package enum Method: String, CaseIterable, Codable {
        case reflink, copy = "full-copy", mkfs = "mkfs.ext4"
    }

    package struct Figures: Codable {
        package var count: Int
        package var p50Ms: Double
        package var p99Ms: Double
        package var perSecond: Double
    }

    package struct Report: Codable {
        package var ratio: Double
        package var sizeMiB: Int
        package var backend: String
        package var sequential: [String: Figures]
        package var burst: [String: Figures]
        package var burstSize: Int
        package var erofsImageMB: Double
        package var erofsBuildSecondsP50: Double
        package var erofsBuildSeconds: [Double]
    }

    package static func measure(
        root: String, sizeMiB: Int, iterations: Int, concurrency: Int, imageMB: Int,
        erofsRuns: Int
    ) throws -> Report {
        let layers = WritableLayers(root: root)
        _ = try layers.templatePath(sizeMiB: sizeMiB)  // Made once, outside the timings.
        var sequential: [String: Figures] = [:]
        var burst: [String: Figures] = [:]
        for method in Method.allCases {
            let make = maker(method, layers: layers, sizeMiB: sizeMiB)
            sequential[method.rawValue] = try Self.sequential(iterations, make)
            if concurrency > 0 { burst[method.rawValue] = try Self.burst(concurrency, make) }
        }
        let erofs = try erofsBuilds(root: root, megabytes: imageMB, runs: erofsRuns)
        let copy = sequential[Method.copy.rawValue]?.p50Ms ?? .nan, reflink = sequential[Method.reflink.rawValue]?.p50Ms ?? .nan
        return Report(
            ratio: copy / max(reflink, 0.000_1), sizeMiB: sizeMiB,
            backend: WritableLayerBackend.probe(stateRoot: root).summary,
            sequential: sequential, burst: burst, burstSize: concurrency,
            erofsImageMB: erofs.megabytes, erofsBuildSecondsP50: Percentile.of(erofs.seconds, fraction: 0.5),
            erofsBuildSeconds: erofs.seconds)
    }

    // MARK: Measuring

    static func maker(_ method: Method, layers: WritableLayers, sizeMiB: Int) -> @Sendable () throws -> FileDescriptor {
        switch method {
        case .reflink: return { try layers.make(sizeMiB: sizeMiB) }
        case .copy: return { try layers.makeByCopy(sizeMiB: sizeMiB) }
        case .mkfs: return { try layers.makeByFormatting(sizeMiB: sizeMiB) }
        }
    }

    static func sequential(_ count: Int, _ make: () throws -> FileDescriptor) throws -> Figures {
        var latencies: [Double] = []
        let started = DispatchTime.now()
        for _ in 0..<count {
            let begin = DispatchTime.now()
            let layer = try make()
            latencies.append(milliseconds(since: begin))
            layer.close()
        }
        return figures(latencies, wallMs: milliseconds(since: started))
    }

    /// Starts `count` threads at once, each making one layer; all stay open until the last is made.
    static func burst(_ count: Int, _ make: @escaping @Sendable () throws -> FileDescriptor) throws -> Figures {
        final class Results: @unchecked Sendable {
            let lock = NSLock()
            var latencies: [Double] = []
            var layers: [FileDescriptor] = []
            var failure: Error?
        }
        let results = Results()
        let gate = DispatchSemaphore(value: 0)
        let done = DispatchGroup()
        for _ in 0..<count {
            done.enter()
            let thread = Thread {
                gate.wait()
                let begin = DispatchTime.now()
                do {
                    let layer = try make()
                    let latency = milliseconds(since: begin)
                    results.lock.withLock {
                        results.latencies.append(latency)
                        results.layers.append(layer)
                    }
                } catch {
                    results.lock.withLock { results.failure = error }
                }
                done.leave()
            }
            thread.stackSize = 1 << 20
            thread.start()
        }
        let started = DispatchTime.now()
        for _ in 0..<count { gate.signal() }
        done.wait()
        let wall = milliseconds(since: started)
        for layer in results.layers { layer.close() }
        if let failure = results.failure { throw failure }
        return figures(results.latencies, wallMs: wall)
    }

    /// Builds an EROFS image from a generated tree of about `megabytes` MB, `runs` times.
    static func erofsBuilds(root: String, megabytes: Int, runs: Int) throws -> (megabytes: Double, seconds: [Double]) {
        let scratch = root + "/bench-erofs-\(getpid())"
        try FileSystem.makeDirectories(scratch + "/tree", mode: 0o700)
        defer { try? FileSystem.removeTree(scratch) }
        // 1 MB files with varied content in a few directories, like an application image.
        var chunk = [UInt8](repeating: 0, count: 1_000_000)
        var state: UInt64 = 0x9E37_79B9_7F4A_7C15
        for index in chunk.indices {
            state ^= state << 13; state ^= state >> 7; state ^= state << 17
            chunk[index] = UInt8(truncatingIfNeeded: state)
        }
        for file in 0..<megabytes {
            let directory = scratch + "/tree/dir\(file % 10)"
            try FileSystem.makeDirectories(directory)
            chunk[0] = UInt8(truncatingIfNeeded: file)
            let handle = try FileDescriptor.open(directory + "/file\(file)", O_WRONLY | O_CREAT | O_TRUNC)
            try handle.writeAll(chunk)
        }
        var seconds: [Double] = []
        for run in 0..<runs {
            let output = scratch + "/image-\(run).erofs"
            let begin = DispatchTime.now()
            try EROFSBuilder.build(tree: scratch + "/tree", output: output)
            seconds.append(milliseconds(since: begin) / 1000)
            try FileSystem.unlink(at: nil, output)
        }
        return (Double(megabytes), seconds)
    }

    static func figures(_ latencies: [Double], wallMs: Double) -> Figures {
        Figures(
            count: latencies.count, p50Ms: Percentile.of(latencies, fraction: 0.5), p99Ms: Percentile.of(latencies, fraction: 0.99),
            perSecond: Double(latencies.count) / max(wallMs / 1000, 0.000_001))
    }

    static func milliseconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1_000_000
    }

    package static func table(_ report: Report) -> String {
        var lines = [
            "writable layers of \(report.sizeMiB) MiB (\(report.backend))",
            "method       mode        count    p50 ms    p99 ms    per second",
        ]
        for method in Method.allCases {
            for (mode, figures) in [("sequential", report.sequential[method.rawValue]), ("burst", report.burst[method.rawValue])] {
                guard let figures else { continue }
                let name = method.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                let kind = mode.padding(toLength: 10, withPad: " ", startingAt: 0)
                lines.append(
                    name + " " + kind
                        + String(
                            format: " %6d %9.2f %9.2f %13.1f", figures.count, figures.p50Ms,
                            figures.p99Ms, figures.perSecond))
            }
        }
        lines.append(String(format: "ratio (full-copy p50 / reflink p50): %.1f", report.ratio))
        lines.append(
            String(
                format: "EROFS build of a %.0f MB tree: p50 %.2f s over %d runs", report.erofsImageMB,
                report.erofsBuildSecondsP50, report.erofsBuildSeconds.count))
        return lines.joined(separator: "\n")
    }
}
