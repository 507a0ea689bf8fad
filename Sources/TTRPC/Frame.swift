/// ttrpc frame message types (byte 8 of the header).
public enum FrameType {
    public static let request: UInt8 = 0x01
    public static let response: UInt8 = 0x02
    /// Streaming data (ttrpc >= 1.2); ignored by this 1.1-level implementation, like unknown types.
    public static let data: UInt8 = 0x03
}

/// The 10-byte ttrpc frame header: u32 big-endian payload length, u32 big-endian stream id,
/// u8 message type, u8 flags.
public struct FrameHeader: Equatable, Sendable {
    public static let size = 10
    /// ttrpc's messageLengthMax: payloads above 4 MiB are refused.
    public static let maxPayloadLength = 4 << 20

    public var length: UInt32
    public var streamID: UInt32
    public var type: UInt8
    public var flags: UInt8

    public init(length: UInt32, streamID: UInt32, type: UInt8, flags: UInt8 = 0) {
        self.length = length
        self.streamID = streamID
        self.type = type
        self.flags = flags
    }

    /// Decodes a header; nil unless given exactly `FrameHeader.size` bytes.
    public init?(decoding bytes: some Collection<UInt8>) {
        guard bytes.count == FrameHeader.size else { return nil }
        let b = Array(bytes)
        length = UInt32(b[0]) << 24 | UInt32(b[1]) << 16 | UInt32(b[2]) << 8 | UInt32(b[3])
        streamID = UInt32(b[4]) << 24 | UInt32(b[5]) << 16 | UInt32(b[6]) << 8 | UInt32(b[7])
        type = b[8]
        flags = b[9]
    }

    public var encoded: [UInt8] {
        [
            UInt8(truncatingIfNeeded: length >> 24), UInt8(truncatingIfNeeded: length >> 16),
            UInt8(truncatingIfNeeded: length >> 8), UInt8(truncatingIfNeeded: length),
            UInt8(truncatingIfNeeded: streamID >> 24), UInt8(truncatingIfNeeded: streamID >> 16),
            UInt8(truncatingIfNeeded: streamID >> 8), UInt8(truncatingIfNeeded: streamID),
            type, flags,
        ]
    }

    public var exceedsLimit: Bool { Int(length) > FrameHeader.maxPayloadLength }
}

/// One whole frame, header plus payload.
public struct Frame: Equatable, Sendable {
    public var header: FrameHeader
    public var payload: [UInt8]

    public init(header: FrameHeader, payload: [UInt8]) {
        self.header = header
        self.payload = payload
    }

    /// A frame whose header length is taken from `payload`.
    public init(streamID: UInt32, type: UInt8, payload: [UInt8]) {
        header = FrameHeader(length: UInt32(payload.count), streamID: streamID, type: type)
        self.payload = payload
    }

    /// Header and payload in one buffer, so a frame is written in one go.
    public var encoded: [UInt8] { header.encoded + payload }
}
