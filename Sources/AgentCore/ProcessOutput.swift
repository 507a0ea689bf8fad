#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// One output stream (stdout or stderr) of a guest process: a thread drains the pipe into a
/// buffer that ReadStdout/ReadStderr calls take from, in order.
final class ProcessOutput: Sendable {
    struct Chunk: Sendable, Equatable {
        var data: [UInt8]
        var eof: Bool
    }

    private struct State: Sendable {
        var buffer: [UInt8] = []
        var ended = false
    }

    /// Above this many unread bytes the drain thread pauses, so a chatty process nobody reads
    /// cannot fill the guest's memory (it blocks on its full pipe instead).
    static let bufferLimit = 4 << 20
    static let defaultChunk = 64 << 10
    static let maxChunk = 1 << 20

    private let monitor = Monitor(State())

    /// Starts draining `pipe` (a pipe's read end, or a terminal master: EIO once the process
    /// side is closed counts as the end) on its own thread; closes it at end of stream.
    init(draining pipe: FileDescriptor, name: String) throws {
        try DetachedThread.start(name: name) { [monitor] in
            var scratch = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                while monitor.read({ $0.buffer.count }) > Self.bufferLimit { usleep(10_000) }
                let count = (try? scratch.withUnsafeMutableBytes { try pipe.read(into: $0) }) ?? 0
                if count == 0 { break }
                monitor.update { $0.buffer += scratch[0..<count] }
            }
            pipe.close()
            monitor.update { $0.ended = true }
        }
    }

    /// A stream with nothing to read (stderr of a process on a terminal).
    private init() {
        monitor.update { $0.ended = true }
    }

    static func ended() -> ProcessOutput { ProcessOutput() }

    /// The next bytes (at most `maxBytes`, 0 meaning the default), waiting for some to arrive;
    /// `eof` once the stream has ended and everything was read.
    func read(maxBytes: UInt32) async throws -> Chunk {
        let limit = Self.chunkLimit(requested: maxBytes)
        return try await monitor.wait { state -> Chunk? in
            if !state.buffer.isEmpty {
                let count = min(limit, state.buffer.count)
                let data = Array(state.buffer[0..<count])
                state.buffer.removeFirst(count)
                return Chunk(data: data, eof: state.ended && state.buffer.isEmpty)
            }
            return state.ended ? Chunk(data: [], eof: true) : nil
        }
    }

    var isDrained: Bool { monitor.read { $0.ended && $0.buffer.isEmpty } }

    static func chunkLimit(requested: UInt32) -> Int {
        requested == 0 ? defaultChunk : min(Int(requested), maxChunk)
    }
}
