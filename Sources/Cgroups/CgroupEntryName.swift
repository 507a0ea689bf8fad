import HostOS

/// The name of a pool entry's directory, the only place pool state lives (so it survives a
/// crash): `pool-<token>` is free, `sb-<token>-<pid>-<start>-<sandboxID>` is taken by the
/// sandbox whose owner process is <pid> started at <start>. The token (12 hex digits, random)
/// names the entry in every hierarchy, so a half-done rename can be finished after a crash.
package enum CgroupEntryName: Equatable, Sendable {
    case free(token: String)
    case taken(token: String, owner: ProcessIdentity, sandboxID: String)

    static let freePrefix = "pool-"
    static let takenPrefix = "sb-"
    static let tokenLength = 12

    var token: String {
        switch self {
        case .free(let token), .taken(let token, _, _): token
        }
    }

    var text: String {
        switch self {
        case .free(let token):
            "\(Self.freePrefix)\(token)"
        case .taken(let token, let owner, let sandboxID):
            "\(Self.takenPrefix)\(token)-\(owner.pid)-\(owner.startTime)-\(sandboxID)"
        }
    }

    /// Parses a directory name; nil for anything that is not a pool entry.
    init?(parsing name: String) {
        if name.hasPrefix(Self.freePrefix) {
            let token = String(name.dropFirst(Self.freePrefix.count))
            guard Self.isToken(token) else { return nil }
            self = .free(token: token)
            return
        }
        guard name.hasPrefix(Self.takenPrefix) else { return nil }
        let parts = name.dropFirst(Self.takenPrefix.count).split(separator: "-", maxSplits: 3, omittingEmptySubsequences: false)
        guard parts.count == 4, Self.isToken(String(parts[0])), let pid = Int32(parts[1]), let start = UInt64(parts[2]),
            let sandboxID = try? SandboxID.validate(String(parts[3]))
        else { return nil }
        self = .taken(token: String(parts[0]), owner: ProcessIdentity(pid: pid, startTime: start), sandboxID: sandboxID)
    }

    static func isToken(_ text: String) -> Bool {
        text.utf8.count == tokenLength && text.utf8.allSatisfy { ($0 >= 0x30 && $0 <= 0x39) || ($0 >= 0x61 && $0 <= 0x66) }
    }

    package static func newToken() -> String {
        var generator = SystemRandomNumberGenerator()
        let value = generator.next() & 0xFFFF_FFFF_FFFF
        let hex = String(value, radix: 16)
        return String(repeating: "0", count: tokenLength - hex.count) + hex
    }
}
