import Foundation
import HostOS
import Testing
@testable import Storage

private func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

/// The rund executable built next to this test bundle (`swift build --build-tests` builds both).
private let rundBinary = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
    .deletingLastPathComponent().appendingPathComponent("rund").path
private let canRun = Fixtures.isRoot && Fixtures.erofsTools && !Fixtures.busybox.isEmpty && access(rundBinary, X_OK) == 0

/// `rund image import` itself on hostile archives: exit status 1, exactly one `rund:` line on
/// stderr, nothing on stdout, nothing written outside the store, no staging left.
@Suite(.enabled(if: canRun, "needs root, erofs-utils, busybox-static and the rund binary (swift build)"))
struct ImportCommandTests {
    @Test func hostileArchivesEndWithOneLine() throws {
        let bench = try HostileBench()
        var escape = TarWriter()
        escape.raw(utf8("s"), .symlink, mode: 0o777, link: bench.canaryBytes)
        escape.raw(utf8("s/\u{301}x"), content: utf8("escaped\n"))
        // A name with a line break: the message quotes it, still on one line.
        var lineBreak = TarWriter()
        lineBreak.raw(utf8("evil\nrund: forged line/../../x"), content: [])
        // The header that used to trap: a whiteout's content is skipped, not read, and skipping
        // size + padding overflowed (SIGILL, exit 132, staging left behind).
        var trap = TarWriter()
        trap.raw(utf8(".wh.huge"), content: []) { header in
            for (i, byte) in ([0x80, 0, 0, 0, 0x7f] + [UInt8](repeating: 0xff, count: 7) as [UInt8]).enumerated() { header[124 + i] = byte }
        }
        var bomb = TarWriter()
        bomb.raw(utf8("x"), content: [], pax: [(utf8("path"), utf8("..") + [0] + utf8("/x"))])
        let cases: [(String, [UInt8])] = [
            ("write through a hidden separator", bench.layout([escape.finish()])),
            ("line break in a name", bench.layout([lineBreak.finish()])),
            ("size near Int64.max", bench.layout([trap.finish()])),
            ("NUL in a pax path", bench.layout([bomb.finish()])),
            ("not an archive", utf8("garbage") + [UInt8](repeating: 7, count: 1000)),
        ]
        for (label, archive) in cases {
            let before = Fixtures.snapshot(bench.root.path)
            let canary = HostileBench.listing(bench.canary.path)
            let file = try bench.scratch.write("case.tar", archive)
            let result = try Subprocess.run([rundBinary, "image", "import", "--root", bench.root.path, file])
            #expect(result.status == 1, "\(label): status \(result.status), stderr: \(result.stderrText)")
            let lines = result.stderrText.split(separator: "\n", omittingEmptySubsequences: false)
            #expect(lines.count == 2 && lines[0].hasPrefix("rund: ") && lines[1].isEmpty, "\(label): stderr \(result.stderrText)")
            #expect(result.stdout.isEmpty, "\(label): stdout \(result.stdoutText)")
            #expect(Fixtures.snapshot(bench.root.path) == before, "\(label): the store changed")
            #expect(HostileBench.listing(bench.canary.path) == canary, "\(label): written outside the store")
            #expect(HostileBench.stagingLeft(bench.root.path).isEmpty, "\(label): staging left behind")
        }
    }
}
