import Untrusted

/// A google.rpc.Code value. A struct rather than an enum so codes this side does not know
/// survive a round trip.
public struct TTRPCStatusCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: Int32
    public init(rawValue: Int32) { self.rawValue = rawValue }

    public static let ok = TTRPCStatusCode(rawValue: 0)
    public static let canceled = TTRPCStatusCode(rawValue: 1)
    public static let unknown = TTRPCStatusCode(rawValue: 2)
    public static let invalidArgument = TTRPCStatusCode(rawValue: 3)
    public static let deadlineExceeded = TTRPCStatusCode(rawValue: 4)
    public static let notFound = TTRPCStatusCode(rawValue: 5)
    public static let alreadyExists = TTRPCStatusCode(rawValue: 6)
    public static let permissionDenied = TTRPCStatusCode(rawValue: 7)
    public static let resourceExhausted = TTRPCStatusCode(rawValue: 8)
    public static let failedPrecondition = TTRPCStatusCode(rawValue: 9)
    public static let aborted = TTRPCStatusCode(rawValue: 10)
    public static let outOfRange = TTRPCStatusCode(rawValue: 11)
    public static let unimplemented = TTRPCStatusCode(rawValue: 12)
    public static let `internal` = TTRPCStatusCode(rawValue: 13)
    public static let unavailable = TTRPCStatusCode(rawValue: 14)
    public static let dataLoss = TTRPCStatusCode(rawValue: 15)
    public static let unauthenticated = TTRPCStatusCode(rawValue: 16)

    private static let names: [Int32: String] = [
        0: "ok", 1: "canceled", 2: "unknown", 3: "invalid argument", 4: "deadline exceeded",
        5: "not found", 6: "already exists", 7: "permission denied", 8: "resource exhausted",
        9: "failed precondition", 10: "aborted", 11: "out of range", 12: "unimplemented",
        13: "internal", 14: "unavailable", 15: "data loss", 16: "unauthenticated",
    ]

    public var description: String { Self.names[rawValue] ?? "code \(rawValue)" }
}

/// A non-OK ttrpc status: what a handler throws to fail a call, and what a client call throws
/// when the server answered with an error. `message` is the peer's text as sent; `description`
/// shows it escaped and bounded (`UntrustedText`), since the peer may be a hostile guest.
public struct TTRPCStatus: Error, Equatable, Sendable, CustomStringConvertible {
    public var code: TTRPCStatusCode
    public var message: String

    public init(_ code: TTRPCStatusCode, _ message: String) {
        self.code = code
        self.message = message
    }

    public var description: String { "\(UntrustedText.escaped(message)): \(code)" }
}

/// The transport failed: the call's outcome is unknown.
public enum TTRPCConnectionError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The connection ended (peer closed, I/O error, or `close()`); pending calls fail with this.
    case closed(reason: String)
    /// The stream ended inside a frame.
    case truncatedFrame(expected: Int, received: Int)
    /// The peer sent a response that is not a valid ttrpc Response message.
    case malformedResponse(streamID: UInt32, reason: String)
    /// Every odd stream id of this connection has been used; open a new connection.
    case streamIDsExhausted
    /// The request is larger than ttrpc's 4 MiB message limit.
    case requestTooLarge(bytes: Int)

    public var description: String {
        switch self {
        case .closed(let reason):
            "ttrpc connection closed: \(reason)"
        case .truncatedFrame(let expected, let received):
            "ttrpc stream ended inside a frame (\(received) of \(expected) bytes)"
        case .malformedResponse(let streamID, let reason):
            "ttrpc peer sent a malformed response on stream \(streamID): \(reason)"
        case .streamIDsExhausted:
            "ttrpc stream ids exhausted on this connection: reconnect"
        case .requestTooLarge(let bytes):
            "ttrpc request of \(bytes) bytes exceeds the \(FrameHeader.maxPayloadLength)-byte limit: send less per call"
        }
    }
}
