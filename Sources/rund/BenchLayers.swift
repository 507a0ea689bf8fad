import ArgumentParser
import Foundation
import HostOS
import Storage

/// `rund bench layers`: how fast a sandbox gets its writable disk (reflink vs full copy vs fresh
/// mkfs.ext4, one at a time and in a burst), and how long one EROFS build of ~100 MB takes.
struct BenchLayers: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "layers",
        abstract: "Writable-layer creation (reflink vs full copy vs mkfs.ext4) and EROFS build time.",
        discussion: """
        Layers are made in <root>/writable (the XFS pool when the root cannot reflink) and closed
        right away, so nothing is left behind. `ratio` is full-copy p50 / reflink p50 at
        concurrency 1.
        """
    )

    @OptionGroup var rootOptions: RootOptions
    @Option(help: "Writable layer size in MiB.")
    var sizeMib = WritableLayers.defaultSizeMiB
    @Option(help: "Sequential creations per method.")
    var iterations = 20
    @Option(help: "Creations started at once per method in the burst (0 skips the burst).")
    var concurrency = 200
    @Option(help: "Size of the tree for the EROFS build, in MB.")
    var imageMb = 100
    @Option(help: "EROFS builds to time.")
    var erofsRuns = 3
    @Flag(help: "Print one JSON object.")
    var json = false

    enum Method: String, CaseIterable, Codable {
        case reflink, copy = "full-copy", mkfs = "mkfs.ext4"
    }

    struct Figures: Codable {
        var count: Int
        var p50Ms: Double
        var p99Ms: Double
        var perSecond: Double
    }

    struct Report: Codable {
        var ratio: Double
        var sizeMiB: Int
        var backend: String
        var sequential: [String: Figures]
        var burst: [String: Figures]
        var burstSize: Int
        var erofsImageMB: Double
        var erofsBuildSecondsP50: Double
        var erofsBuildSeconds: [Double]
    }

    func validate() throws {
        guard iterations >= 1, concurrency >= 0, imageMb >= 1, erofsRuns >= 1 else {
            throw ValidationError("--iterations, --image-mb and --erofs-runs must be at least 1, --concurrency at least 0")
        }
    }

    func run() async throws {
        let root = StateRoot.resolve(rootOptions.root)
        let layers = WritableLayers(root: root)
        _ = try layers.templatePath(sizeMiB: sizeMib)  // Made once, outside the timings.
        var sequential: [String: Figures] = [:]
        var burst: [String: Figures] = [:]
        for method in Method.allCases {
            let make = Self.maker(method, layers: layers, sizeMiB: sizeMib)
            sequential[method.rawValue] = try Self.sequential(iterations, make)
            if concurrency > 0 { burst[method.rawValue] = try Self.burst(concurrency, make) }
        }
        let erofs = try Self.erofsBuilds(root: root, megabytes: imageMb, runs: erofsRuns)
        let report = Report(
            ratio: sequential[Method.copy.rawValue]!.p50Ms / max(sequential[Method.reflink.rawValue]!.p50Ms, 0.000_1),
            sizeMiB: sizeMib,
            backend: WritableLayerBackend.probe(stateRoot: root).summary,
            sequential: sequential, burst: burst, burstSize: concurrency,
            erofsImageMB: erofs.megabytes, erofsBuildSecondsP50: Percentile.of(erofs.seconds, fraction: 0.5), erofsBuildSeconds: erofs.seconds)
        if json {
            try printJSON(report)
        } else {
            print(Self.table(report))
        }
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
        Figures(count: latencies.count, p50Ms: Percentile.of(latencies, fraction: 0.5), p99Ms: Percentile.of(latencies, fraction: 0.99),
                perSecond: Double(latencies.count) / max(wallMs / 1000, 0.000_001))
    }

    static func milliseconds(since start: DispatchTime) -> Double {
        Double(DispatchTime.now().uptimeNanoseconds - start.uptimeNanoseconds) / 1_000_000
    }

    static func table(_ report: Report) -> String {
        var lines = ["writable layers of \(report.sizeMiB) MiB (\(report.backend))",
                     "method       mode        count    p50 ms    p99 ms    per second"]
        for method in Method.allCases {
            for (mode, figures) in [("sequential", report.sequential[method.rawValue]), ("burst", report.burst[method.rawValue])] {
                guard let figures else { continue }
                let name = method.rawValue.padding(toLength: 12, withPad: " ", startingAt: 0)
                let kind = mode.padding(toLength: 10, withPad: " ", startingAt: 0)
                lines.append(name + " " + kind + String(format: " %6d %9.2f %9.2f %13.1f", figures.count, figures.p50Ms,
                                                        figures.p99Ms, figures.perSecond))
            }
        }
        lines.append(String(format: "ratio (full-copy p50 / reflink p50): %.1f", report.ratio))
        lines.append(String(format: "EROFS build of a %.0f MB tree: p50 %.2f s over %d runs", report.erofsImageMB,
                            report.erofsBuildSecondsP50, report.erofsBuildSeconds.count))
        return lines.joined(separator: "\n")
    }
}
