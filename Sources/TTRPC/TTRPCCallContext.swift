/// What a server handler knows about the call besides its payload.
public struct TTRPCCallContext: Sendable {
    public var service: String
    public var method: String
    /// The request's metadata, in wire order; keys may repeat.
    public var metadata: [(key: String, value: String)]
    /// The time the client gave the call (`timeout_nano`), when it gave one. The server answers
    /// DEADLINE_EXCEEDED and cancels the handler's task when it runs out.
    public var timeout: Duration?
    public var streamID: UInt32

    /// The first value of metadata `key`.
    public func metadata(_ key: String) -> String? {
        metadata.first { $0.key == key }?.value
    }
}
