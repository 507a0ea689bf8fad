#if canImport(Glibc)
import Glibc
#endif
import HostOS
@testable import Shim
import Testing

/// containerd's stdio handed to the shim: real FIFOs, opened as ctr leaves them.
struct ProcessIOTests {
    final class Directory {
        let path: String
        init() throws {
            var template = Array("/tmp/shim-io-XXXXXX".utf8CString)
            guard template.withUnsafeMutableBufferPointer({ mkdtemp($0.baseAddress!) }) != nil else { throw SystemError.last("mkdtemp") }
            path = String(decoding: template.dropLast().map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        deinit { try? FileSystem.removeTree(path) }
        func fifo(_ name: String) throws -> String {
            let fifoPath = path + "/" + name
            guard mkfifo(fifoPath, 0o600) == 0 else { throw SystemError.last("mkfifo", subject: fifoPath) }
            return fifoPath
        }
    }

    @Test func uriFormsAreParsed() throws {
        #expect(try StdioTarget.parse("") == StdioTarget(kind: .none))
        #expect(try StdioTarget.parse("/run/containerd/fifo/1/t1-stdout") == StdioTarget(kind: .fifo("/run/containerd/fifo/1/t1-stdout")))
        #expect(try StdioTarget.parse("fifo:///a/b") == StdioTarget(kind: .fifo("/a/b")))
        #expect(try StdioTarget.parse("file:///var/log/t1.log") == StdioTarget(kind: .file("/var/log/t1.log")))
        #expect { try StdioTarget.parse("binary:///usr/bin/logger?x=1") } throws: { ($0 as? ShimError)?.code == .unimplemented }
        #expect(throws: ShimError.self) { try StdioTarget.parse("relative/path") }
    }

    /// ctr opens its readers before Create; the shim's writes reach them, and closing the
    /// shim's ends is the reader's end of file.
    @Test func outputsReachTheClientsReadersAndEndWithTheShimsClose() throws {
        let directory = try Directory()
        let out = try directory.fifo("t1-stdout"), err = try directory.fifo("t1-stderr"), input = try directory.fifo("t1-stdin")
        let outReader = try FileDescriptor.open(out, O_RDONLY | O_NONBLOCK)
        let errReader = try FileDescriptor.open(err, O_RDONLY | O_NONBLOCK)
        let io = try ProcessIO(stdin: input, stdout: out, stderr: err, terminal: false)
        let stop = try EventFD()
        let (outWriter, errWriter) = (
            try #require(try ProcessIO.openOutput(StdioTarget.parse(out))), try #require(try ProcessIO.openOutput(StdioTarget.parse(err)))
        )
        try ProcessIO.write(Array("hello\n".utf8), to: outWriter, stop: stop.descriptor)
        try ProcessIO.write(Array("oops\n".utf8), to: errWriter, stop: stop.descriptor)
        var first = [UInt8](repeating: 0, count: 16)
        let got = try first.withUnsafeMutableBytes { try outReader.read(into: $0) }
        #expect(String(decoding: first[0..<got], as: UTF8.self) == "hello\n")
        outWriter.close()
        errWriter.close()
        var buffer = [UInt8](repeating: 0, count: 16)
        let count = try buffer.withUnsafeMutableBytes { try errReader.read(into: $0) }
        #expect(String(decoding: buffer[0..<count], as: UTF8.self) == "oops\n")
        #expect(io.stdin != nil)
        io.close()
    }

    /// ctr opens its readers asynchronously: output written before the reader came is there
    /// when it does, and the reader sees its end once the shim closes.
    @Test func aReaderThatComesLateGetsTheOutput() throws {
        let directory = try Directory()
        let out = try directory.fifo("late")
        let writer = try #require(try ProcessIO.openOutput(StdioTarget.parse(out)))
        let stop = try EventFD()
        try ProcessIO.write(Array("early\n".utf8), to: writer, stop: stop.descriptor)
        let reader = try FileDescriptor.open(out, O_RDONLY | O_NONBLOCK)
        writer.close()
        #expect(String(decoding: try reader.readToEnd(limit: 64), as: UTF8.self) == "early\n")
    }

    /// A reader that stops reading holds the writer back, and the shim's stop request frees it.
    @Test func aStalledReaderHoldsWritesUntilTheStop() throws {
        let directory = try Directory()
        let out = try directory.fifo("slow")
        let reader = try FileDescriptor.open(out, O_RDONLY | O_NONBLOCK)
        let writer = try #require(try ProcessIO.openOutput(StdioTarget.parse(out)))
        let stop = try EventFD()
        let big = [UInt8](repeating: 0x61, count: 1 << 20)  // More than a pipe holds.
        let stopper = try OSThread.spawn(name: "stopper") {
            usleep(200_000)
            try? stop.signal()
        }
        #expect(throws: ShimError.self) { try ProcessIO.write(big, to: writer, stop: stop.descriptor) }
        stopper.join()
        reader.close()
    }

    /// The stdin FIFO is held for reading and writing: a client that opens and closes its end
    /// never makes the shim see an end of file of its own (CloseIO says when stdin ends).
    @Test func theStdinFIFONeverEndsByItself() throws {
        let directory = try Directory()
        let input = try directory.fifo("t1-stdin")
        let io = try ProcessIO(stdin: input, stdout: "", stderr: "", terminal: false)
        let stdin = try #require(io.stdin)
        let client = try FileDescriptor.open(input, O_WRONLY | O_NONBLOCK)
        try client.writeAll("x")
        client.close()
        #expect(try stdin.waitReadable(milliseconds: 0))
        var buffer = [UInt8](repeating: 0, count: 4)
        #expect(try buffer.withUnsafeMutableBytes { try stdin.read(into: $0) } == 1)
        #expect(try stdin.waitReadable(milliseconds: 50) == false)  // No hang-up, no EOF.
        io.close()
    }

    @Test func aFileURIIsAppendedTo() throws {
        let directory = try Directory()
        let log = directory.path + "/logs/t1.log"
        let io = try ProcessIO(stdin: "", stdout: "file://" + log, stderr: "file://" + log, terminal: false)
        #expect(FileSystem.exists(log))
        io.close()
    }
}
