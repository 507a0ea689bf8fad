import Foundation
import HostOS
import Testing
@testable import Storage

private let canBuild = Fixtures.isRoot && Fixtures.erofsTools && !Fixtures.busybox.isEmpty

private func utf8(_ text: String) -> [UInt8] { Array(text.utf8) }

/// Member names whose bytes the kernel resolves differently from what a check on Swift
/// Characters sees, and the classic escapes. Every one aims at a canary directory outside the
/// store; every one must be refused with one line and change nothing anywhere.
@Suite(.enabled(if: canBuild, "needs root (mknod, chown), erofs-utils and busybox-static"))
struct HostileNameTests {
    /// A symlink to the canary, then a write whose separator a Character check cannot see.
    private func throughHiddenSeparator(_ bench: HostileBench, link: [UInt8], write: [UInt8]) -> [[UInt8]] {
        var tar = TarWriter()
        tar.raw(link, .symlink, mode: 0o777, link: bench.canaryBytes)
        // A fresh name each time, so every escape shows in the canary.
        tar.raw(write + utf8("-\(UInt32.random(in: 0...UInt32.max))"), content: utf8("escaped\n"))
        return [tar.finish()]
    }

    @Test func namesWhoseBytesAndCharactersDisagree() throws {
        let bench = try HostileBench()
        // "/" followed by a mark that extends the grapheme: Character "/" never matches it.
        let afterSlash: [(String, [UInt8])] = [
            ("combining acute U+0301 after /", [0xcc, 0x81]),
            ("zero width joiner U+200D after /", [0xe2, 0x80, 0x8d]),
            ("spacing mark U+0903 after /", [0xe0, 0xa4, 0x83]),
            ("variation selector U+FE0F after /", [0xef, 0xb8, 0x8f]),
        ]
        var cases: [(String, [[UInt8]])] = afterSlash.map { label, mark in
            (label, throughHiddenSeparator(bench, link: utf8("s"), write: utf8("s/") + mark + utf8("x")))
        }
        // A prepend character U+0600 glues itself to the "/" after it.
        let prepend: [UInt8] = [0xd8, 0x80]
        cases.append(
            ("prepend U+0600 before /", throughHiddenSeparator(bench, link: utf8("s") + prepend, write: utf8("s") + prepend + utf8("/x"))))
        // ".." then "/"+mark: one Character component "../́", but the kernel walks "..".
        var dotdot = TarWriter()
        dotdot.raw(utf8("../") + [0xcc, 0x81], .symlink, mode: 0o777, link: bench.canaryBytes)
        dotdot.raw(utf8("../") + [0xcc, 0x81, 0x2f, 0xcc, 0x81] + utf8("x"), content: utf8("escaped\n"))
        cases.append(("'..' hidden by U+0301 after /", [dotdot.finish()]))
        // A mark after "." or "..": the kernel sees an ordinary name, so the escape needs the
        // mark-hidden separator after it as well.
        var dotMark = TarWriter()
        dotMark.raw(utf8("..") + [0xcc, 0x81] + utf8("/../") + [0xcc, 0x81], .symlink, mode: 0o777, link: bench.canaryBytes)
        dotMark.raw(utf8("..") + [0xcc, 0x81] + utf8("/../") + [0xcc, 0x81, 0x2f, 0xcc, 0x81] + utf8("x"), content: utf8("escaped\n"))
        cases.append(("U+0301 after '..' and after /", [dotMark.finish()]))
        // Hard link, whiteout and opaque directory through a hidden separator.
        var hardLink = TarWriter()
        hardLink.raw(utf8("s") + prepend, .symlink, mode: 0o777, link: bench.canaryBytes)
        hardLink.raw(utf8("stolen"), .hardLink, link: utf8("s") + prepend + utf8("/keep"))
        cases.append(("hard link source behind U+0600", [hardLink.finish()]))
        var whiteout = TarWriter()
        whiteout.raw(utf8("s") + prepend, .symlink, mode: 0o777, link: bench.canaryBytes)
        whiteout.raw(utf8(".wh.s") + prepend + utf8("/keep"))
        cases.append(("whiteout behind U+0600", [whiteout.finish()]))
        var opaque = TarWriter()
        opaque.raw(utf8("s") + prepend, .symlink, mode: 0o777, link: bench.canaryBytes)
        opaque.raw(utf8("s") + prepend + utf8("/sub/.wh..wh..opq"))
        cases.append(("opaque directory behind U+0600", [opaque.finish()]))
        // CR LF is one Character; invalid UTF-8 is repaired to U+FFFD by String(decoding:).
        cases.append(
            (
                "CR LF then U+0301 after /",
                throughHiddenSeparator(bench, link: utf8("s\r\n"), write: utf8("s\r\n/") + [0xcc, 0x81] + utf8("x"))
            ))
        cases.append(
            (
                "invalid UTF-8 then U+0301 after /",
                throughHiddenSeparator(bench, link: [0xff, 0xfe], write: [0xff, 0xfe, 0x2f, 0xcc, 0x81] + utf8("x"))
            ))
        for (label, layers) in cases {
            let error = try bench.refuse(bench.layout(layers), label)
            #expect(error?.kind == .badInput, "\(label): \(String(describing: error))")
        }
    }

    /// "/"+mark at the very start is an absolute path to the kernel.
    @Test func absolutePathHiddenByAMark() throws {
        let bench = try HostileBench()
        let name = "rund-escape-\(UInt32.random(in: 0...UInt32.max))"
        let hostPath = [0x2f, 0xcc, 0x81] + utf8(name)
        defer { _ = withCName(hostPath) { unlink($0) } }
        var tar = TarWriter()
        tar.raw(hostPath, content: utf8("escaped\n"))
        try bench.refuse(bench.layout([tar.finish()]), "absolute via U+0301")
        #expect(withCName(hostPath) { access($0, F_OK) } != 0, "a file was created in the host's /")
    }

    /// NUL inside pax names (a C string ends there, a Swift String does not).
    @Test func nulInNames() throws {
        let bench = try HostileBench()
        let climb = [UInt8](repeating: 0, count: 0) + Array(repeating: utf8("..") + [0] + utf8("/"), count: 32).flatMap { $0 }
        var path = TarWriter()
        path.raw(utf8("x"), content: utf8("escaped\n"), pax: [(utf8("path"), climb + bench.canaryRelativeToHostRoot + utf8("/x"))])
        var link = TarWriter()
        link.raw(utf8("x"), .hardLink, pax: [(utf8("linkpath"), climb + bench.canaryRelativeToHostRoot + utf8("/keep"))])
        var longName = TarWriter()
        longName.extensionHeader(type: UInt8(ascii: "L"), utf8("a") + [0] + utf8("b") + [0])
        longName.raw(utf8("placeholder"), content: utf8("x"))
        var symlinkTarget = TarWriter()
        symlinkTarget.raw(utf8("l"), .symlink, mode: 0o777, pax: [(utf8("linkpath"), utf8("a") + [0] + utf8("/../../.."))])
        for (label, layer) in [("pax path", path), ("pax linkpath", link), ("GNU long name", longName), ("symlink target", symlinkTarget)] {
            var layer = layer
            let error = try bench.refuse(bench.layout([layer.finish()]), label)
            #expect(error?.kind == .badInput, "\(label): \(String(describing: error))")
        }
    }

    /// `..`, absolute names, writes through symlinks and hard links to outside.
    @Test func classicEscapes() throws {
        let bench = try HostileBench()
        let canary = bench.canary.path
        let depth = String(repeating: "../", count: 32)
        var cases: [(String, [[UInt8]])] = []
        func one(_ label: String, _ build: (inout TarWriter) -> Void) {
            var tar = TarWriter()
            build(&tar)
            cases.append((label, [tar.finish()]))
        }
        one("leading ..") { $0.file(depth + canary.dropFirst() + "/x", "x") }
        one("inner ..") {
            $0.directory("a/"); $0.file("a/../../" + depth + canary.dropFirst() + "/x", "x")
        }
        one("absolute") { $0.file(canary + "/x", "x") }
        one("double slash absolute") { $0.file("//" + canary.dropFirst() + "/x", "x") }
        one("symlink climbing out") { $0.symlink("up", to: depth + canary.dropFirst()) }
        one("hard link out") { $0.hardLink("stolen", to: depth + canary.dropFirst() + "/keep") }
        one("hard link absolute") { $0.hardLink("stolen", to: canary + "/keep") }
        one("write through symlink") {
            $0.symlink("lnk", to: canary); $0.file("lnk/x", "x")
        }
        one("mkdir through symlink") {
            $0.symlink("lnk", to: canary); $0.directory("lnk/d/")
        }
        one("hard link through symlink") {
            $0.symlink("lnk", to: canary); $0.hardLink("stolen", to: "lnk/keep")
        }
        one("whiteout through symlink") {
            $0.symlink("lnk", to: canary); $0.file("lnk/.wh.keep", [])
        }
        one("opaque through symlink") {
            $0.symlink("lnk", to: canary); $0.file("lnk/sub/.wh..wh..opq", [])
        }
        one("whiteout of ..") {
            $0.directory("a/"); $0.file("a/.wh..", [])
        }
        // The symlink in one layer, the write, whiteout or opaque marker through it in the next.
        var lower = TarWriter(); lower.symlink("etc", to: canary)
        let lowerLayer = lower.finish()
        var upper = TarWriter(); upper.file("etc/x", "x")
        cases.append(("write through a lower layer's symlink", [lowerLayer, upper.finish()]))
        var upperWhiteout = TarWriter(); upperWhiteout.file("etc/.wh.keep", [])
        cases.append(("whiteout through a lower layer's symlink", [lowerLayer, upperWhiteout.finish()]))
        var upperOpaque = TarWriter(); upperOpaque.file("etc/sub/.wh..wh..opq", [])
        cases.append(("opaque through a lower layer's symlink", [lowerLayer, upperOpaque.finish()]))
        for (label, layers) in cases {
            let error = try bench.refuse(bench.layout(layers), label)
            #expect(error?.kind == .badInput, "\(label): \(String(describing: error))")
        }
    }

    /// Names the kernel takes as they are stay exactly those bytes in the image: no U+FFFD
    /// repair, no Unicode equivalence between "e"+U+0301 and U+00E9, CR LF kept, and whiteouts
    /// remove exactly the bytes they name.
    @Test func namesAreKeptAsBytes() throws {
        let root = try TemporaryDirectory()
        let scratch = try TemporaryDirectory()
        let decomposed = utf8("e\u{301}"), precomposed = utf8("\u{e9}")
        let invalid: [UInt8] = [0xff], replacement = utf8("\u{fffd}")
        var lower = TarWriter()
        lower.raw(utf8("crlf\r\n/"), .directory, mode: 0o755)
        lower.raw(utf8("crlf\r\n/") + invalid, content: utf8("invalid\n"))
        lower.raw(decomposed, content: utf8("decomposed\n"))
        lower.raw(precomposed, content: utf8("precomposed\n"))
        lower.raw(invalid, content: utf8("invalid\n"))
        lower.raw(replacement, content: utf8("replacement\n"))
        lower.raw([0xcc, 0x81] + utf8("x"), content: utf8("mark\n"))
        lower.raw(utf8("./dotted"), content: utf8("leading ./\n"))
        var upper = TarWriter()
        upper.raw(utf8(".wh.") + invalid)
        upper.raw(utf8(".wh.") + decomposed)
        upper.raw(utf8(".wh.") + [0xcc, 0x81] + utf8("x"))
        let layers = [lower.finish(), upper.finish()]
        let image = try ImageStore(root: root.path).import(
            path: try scratch.write("names.tar", Fixtures.ociLayout(layers: layers.map { .init(bytes: $0, uncompressed: $0) })))
        let names = try Fixtures.withMountedEROFS(image.erofsPath) { tree in
            try HostileBench.names(try FileDescriptor.openDirectory(tree)).sorted { $0.lexicographicallyPrecedes($1) }
        }
        let expected = [utf8("crlf\r\n"), utf8("dotted"), precomposed, replacement].sorted { $0.lexicographicallyPrecedes($1) }
        #expect(names == expected)
        let inner = try Fixtures.withMountedEROFS(image.erofsPath) { tree in
            try HostileBench.names(try FileDescriptor.openDirectory(tree + "/crlf\r\n"))
        }
        #expect(inner == [invalid])
    }
}
