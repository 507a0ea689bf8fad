/// What the reader found next on the stream.
enum IncomingFrame {
    case frame(Frame)
    /// A header announcing more than 4 MiB; its payload has been read and discarded, as the Go
    /// implementation does, so the stream stays in step.
    case oversized(FrameHeader)
}

/// Reads ttrpc frames from a byte stream. Never allocates more than the 4 MiB limit per frame.
struct FrameReader {
    let stream: any ByteStream
    private var scratch = [UInt8](repeating: 0, count: 64 << 10)

    init(stream: any ByteStream) {
        self.stream = stream
    }

    /// The next frame, or nil at a clean end of stream (between frames).
    mutating func next() throws -> IncomingFrame? {
        var headerBytes = [UInt8](repeating: 0, count: FrameHeader.size)
        let got = try readFully(into: &headerBytes, from: 0)
        if got == 0 { return nil }
        guard got == FrameHeader.size, let header = FrameHeader(decoding: headerBytes) else {
            throw TTRPCConnectionError.truncatedFrame(expected: FrameHeader.size, received: got)
        }
        if header.exceedsLimit {
            try discard(Int(header.length))
            return .oversized(header)
        }
        var payload = [UInt8](repeating: 0, count: Int(header.length))
        let body = try readFully(into: &payload, from: 0)
        guard body == payload.count else {
            throw TTRPCConnectionError.truncatedFrame(expected: payload.count, received: body)
        }
        return .frame(Frame(header: header, payload: payload))
    }

    /// Reads until `buffer` is full or the stream ends; returns the bytes read.
    private func readFully(into buffer: inout [UInt8], from start: Int) throws -> Int {
        var filled = start
        while filled < buffer.count {
            let n = try buffer.withUnsafeMutableBytes { raw in
                try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
            }
            if n == 0 { break }
            filled += n
        }
        return filled
    }

    private mutating func discard(_ count: Int) throws {
        var remaining = count
        while remaining > 0 {
            let chunk = min(remaining, scratch.count)
            let n = try scratch.withUnsafeMutableBytes { raw in
                try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[0..<chunk]))
            }
            guard n > 0 else {
                throw TTRPCConnectionError.truncatedFrame(expected: count, received: count - remaining)
            }
            remaining -= n
        }
    }
}
