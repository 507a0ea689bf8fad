import Foundation
import Testing
@testable import HostOS

/// Names as bytes and openat2 beneath a directory, on a real filesystem.
@Suite struct RawNameTests {
    private final class Scratch {
        let path: String
        let directory: FileDescriptor

        init() throws {
            var template = Array("/tmp/rund-rawname-XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { throw SystemError.last("mkdtemp") }
            path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
            directory = try FileDescriptor.openDirectory(path)
        }

        deinit { try? FileSystem.removeTree(path) }
    }

    private let beneath: ResolveFlags = [.beneath, .noSymlinks, .noMagicLinks]

    private func errno(_ body: () throws -> Void) -> Int32? {
        do {
            try body()
            return nil
        } catch let error as SystemError {
            return error.errno
        } catch {
            return -1
        }
    }

    @Test func openat2StaysBeneathTheDirectory() throws {
        let scratch = try Scratch()
        try FileSystem.makeDirectory(at: scratch.directory, Array("inner".utf8), mode: 0o755)
        let inner = try FileSystem.openat2(at: scratch.directory, Array("inner".utf8), O_RDONLY | O_DIRECTORY, resolve: beneath)
        try FileSystem.symlink(at: inner, Array("up".utf8), target: Array("..".utf8))
        try FileSystem.symlink(at: inner, Array("root".utf8), target: Array("/".utf8))
        try FileSystem.makeDirectory(at: inner, Array("sub".utf8), mode: 0o755)
        let flags = O_RDONLY | O_DIRECTORY
        #expect(errno { _ = try FileSystem.openat2(at: inner, Array("..".utf8), flags, resolve: beneath) } == EXDEV)
        #expect(errno { _ = try FileSystem.openat2(at: inner, Array("sub/../..".utf8), flags, resolve: beneath) } == EXDEV)
        #expect(errno { _ = try FileSystem.openat2(at: inner, Array("/tmp".utf8), flags, resolve: beneath) } == EXDEV)
        #expect(errno { _ = try FileSystem.openat2(at: inner, Array("up".utf8), flags, resolve: [.beneath]) } == EXDEV)
        #expect(errno { _ = try FileSystem.openat2(at: inner, Array("root/tmp".utf8), flags, resolve: [.beneath]) } == EXDEV)
        // No symlink anywhere on the path, even one that stays inside.
        try FileSystem.symlink(at: inner, Array("self".utf8), target: Array("sub".utf8))
        #expect(errno { _ = try FileSystem.openat2(at: inner, Array("self".utf8), flags, resolve: beneath) } == ELOOP)
        // The bytes the Swift String check used to miss: "/" + U+0301 is still a separator here.
        #expect(errno { _ = try FileSystem.openat2(at: inner, Array("root/\u{301}x".utf8), O_RDONLY, resolve: beneath) } == ELOOP)
        #expect(try FileSystem.openat2(at: inner, Array("sub".utf8), flags, resolve: beneath).isOpen)
    }

    @Test func nulInANameIsRefusedNotCut() throws {
        let scratch = try Scratch()
        #expect(
            errno { try FileSystem.makeDirectory(at: scratch.directory, Array("a".utf8) + [0] + Array("b".utf8), mode: 0o755) } == EINVAL)
        #expect(errno { _ = try FileSystem.openat2(at: scratch.directory, Array("..".utf8) + [0], O_RDONLY, resolve: beneath) } == EINVAL)
        #expect(try FileSystem.status(at: scratch.directory, Array("a".utf8)) == nil)
    }

    /// Names that are not UTF-8 (or that a String would normalise) are created, found and
    /// removed exactly; removeTree of a tree holding them used to fail (String repair).
    @Test func bytesThatAreNotUTF8SurviveTheRoundTrip() throws {
        let scratch = try Scratch()
        let names: [[UInt8]] = [[0xff], [0xc0, 0xaf], Array("a\r\nb".utf8), [0x65, 0xcc, 0x81], [0xc3, 0xa9]]
        try FileSystem.makeDirectory(at: scratch.directory, [0xfe], mode: 0o755)
        let directory = try FileSystem.openat2(at: scratch.directory, [0xfe], O_RDONLY | O_DIRECTORY, resolve: beneath)
        for name in names {
            _ = try FileSystem.openat2(at: directory, name, O_WRONLY | O_CREAT | O_EXCL, mode: 0o600, resolve: beneath)
        }
        #expect(Set(try FileSystem.entryNames(of: directory)) == Set(names))
        try FileSystem.removeTree(at: scratch.directory, [0xfe])
        #expect(try FileSystem.entryNames(of: scratch.directory).isEmpty)
    }

    @Test func printableIsOneUnambiguousLine() {
        #expect(RawName.printable(Array("usr/bin/sh".utf8)) == "usr/bin/sh")
        #expect(RawName.printable(Array("a\nb".utf8)) == "a\\x0ab")
        #expect(RawName.printable(Array("s/\u{301}x".utf8)) == "s/\\xcc\\x81x")
        #expect(RawName.printable([0xff, 0x41]) == "\\xffA")
        #expect(RawName.printable(Array("caf\u{e9}".utf8)) == "caf\u{e9}")
        #expect(RawName.printable(Array("back\\slash".utf8)) == "back\\x5cslash")
    }
}
