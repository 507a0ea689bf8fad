#if canImport(Glibc)
import Glibc
#endif
import CZlib
import HostOS

/// A forward-only stream of bytes: a file, a decompressor over it, a digest tap.
/// Layers are streamed, never held in memory whole.
protocol ByteSource {
    /// Reads up to buffer.count bytes; 0 means end of stream.
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int
}

extension ByteSource {
    /// Fills the buffer completely or throws on a short stream.
    mutating func readExactly(into buffer: UnsafeMutableRawBufferPointer, what: String) throws {
        var done = 0
        while done < buffer.count {
            let n = try read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[done...]))
            if n == 0 { throw StorageError(.badInput, "\(what) is truncated; the archive is incomplete, fetch or export it again") }
            done += n
        }
    }

    /// Reads and discards `count` bytes.
    mutating func skip(_ count: Int64, what: String) throws {
        var left = count
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer { scratch.deallocate() }
        while left > 0 {
            let chunk = UnsafeMutableRawBufferPointer(rebasing: scratch[0..<Int(min(left, 65536))])
            try readExactly(into: chunk, what: what)
            left -= Int64(chunk.count)
        }
    }
}

/// Bytes in memory: for parsing small documents, and for fuzzing the parsers.
struct MemorySource: ByteSource {
    private let bytes: [UInt8]
    private var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let count = min(buffer.count, bytes.count - offset)
        guard count > 0 else { return 0 }
        bytes.withUnsafeBytes { source in
            buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: source[offset..<(offset + count)]))
        }
        offset += count
        return count
    }
}

/// Stops a stream at a byte limit: a decompression bomb, or an archive larger than allowed,
/// ends with one error line instead of filling the disk or the memory.
struct LimitedSource<Inner: ByteSource>: ByteSource {
    var inner: Inner
    let limit: Int64
    /// Says what went past the limit, for the error.
    let exceeded: @Sendable (Int64) -> StorageError
    private(set) var count: Int64 = 0

    init(_ inner: Inner, limit: Int64, exceeded: @escaping @Sendable (Int64) -> StorageError) {
        self.inner = inner
        self.limit = limit
        self.exceeded = exceeded
    }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        // Ask for at most one byte past the limit: enough to tell "exactly at" from "past".
        let allowed = count >= limit ? 0 : limit - count
        let want = Int(min(Int64(buffer.count), allowed < Int64.max ? allowed + 1 : allowed))
        guard want > 0 else { return 0 }
        let n = try inner.read(into: UnsafeMutableRawBufferPointer(rebasing: buffer[0..<want]))
        count += Int64(n)
        if count > limit { throw exceeded(limit) }
        return n
    }
}

/// Reads a file descriptor.
struct FileSource: ByteSource {
    let file: FileDescriptor
    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try file.read(into: buffer)
    }
}

/// Counts and hashes every byte that passes through, for digest and size verification.
struct DigestingSource<Inner: ByteSource>: ByteSource {
    var inner: Inner
    private(set) var hasher = SHA256()
    private(set) var count: Int64 = 0

    init(_ inner: Inner) { self.inner = inner }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        let n = try inner.read(into: buffer)
        hasher.update(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
        count += Int64(n)
        return n
    }

    /// Drains what is left (tar padding after the end marker) so the digest covers the whole blob.
    mutating func drain() throws {
        let scratch = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
        defer { scratch.deallocate() }
        while try read(into: scratch) > 0 {}
    }

    mutating func digest() -> String { "sha256:" + hasher.finalizeHex() }
}

/// Inflates gzip (including concatenated members) from an inner source.
struct GzipSource<Inner: ByteSource>: ByteSource {
    private var inner: Inner
    private let state: InflateState
    private var finished = false

    init(_ inner: Inner) throws {
        self.inner = inner
        state = try InflateState()
    }

    mutating func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard !finished, let output = buffer.baseAddress, buffer.count > 0 else { return 0 }
        // zlib counts in 32 bits; a larger buffer is filled 4 GiB at most at a time.
        let outputCount = min(buffer.count, Int(UInt32.max))
        while true {
            if state.stream.avail_in == 0 {
                let n = try inner.read(into: state.input)
                if n == 0 { throw StorageError(.badInput, "compressed layer is truncated; fetch or export the image again") }
                state.stream.next_in = state.inputStart
                state.stream.avail_in = uInt(n)
            }
            state.stream.next_out = output.assumingMemoryBound(to: Bytef.self)
            state.stream.avail_out = uInt(outputCount)
            let status = inflate(&state.stream, Z_NO_FLUSH)
            let produced = outputCount - Int(state.stream.avail_out)
            switch status {
            case Z_OK, Z_BUF_ERROR:
                if produced > 0 { return produced }
            case Z_STREAM_END:
                // Another gzip member may follow; anything else (zero padding) ends the stream.
                if try !state.startNextMember(reading: &inner) { finished = true }
                if produced > 0 || finished { return produced }
            default:
                throw StorageError(.badInput, "layer is not valid gzip (zlib status \(status)); the blob is corrupt")
            }
        }
    }
}

/// zlib state lives at a fixed address (z_stream points into itself).
private final class InflateState {
    var stream = z_stream()
    let input = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 16, alignment: 8)
    var inputStart: UnsafeMutablePointer<Bytef> { input.baseAddress.unsafelyUnwrapped.assumingMemoryBound(to: Bytef.self) }

    init() throws {
        guard rund_inflate_init(&stream) == Z_OK else {
            input.deallocate()
            throw StorageError(.io, "zlib could not initialise")
        }
    }

    deinit {
        inflateEnd(&stream)
        input.deallocate()
    }

    /// True if another gzip member starts in the remaining input.
    func startNextMember<S: ByteSource>(reading source: inout S) throws -> Bool {
        if stream.avail_in == 0 {
            let n = try source.read(into: input)
            if n == 0 { return false }
            stream.next_in = inputStart
            stream.avail_in = uInt(n)
        }
        guard let next = stream.next_in, next.pointee == 0x1f else { return false }
        return inflateReset(&stream) == Z_OK
    }
}
