#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// A sandbox's place in the private range `--network default` hands out: 10.213.0.0/16 cut
/// into /30 blocks, one per sandbox (the host end .1, the guest .2). A block is leased by a
/// file under the state root, created exclusively, naming the owner process, so concurrent
/// rund processes never share one and `rund gc` can give back those of owners that died.
/// Everything made for the sandbox is named after the block's index, so the index alone is
/// enough to find and remove it after a crash.
public struct AddressLease: Sendable, Equatable {
    public static let range = IPv4Prefix(address: IPv4Address(0x0AD5_0000), length: 16)!
    public static let count = 1 << (32 - 16 - 2)

    public let index: Int
    /// The owner that took it (for gc) and the sandbox it is for (for people).
    public let owner: ProcessIdentity
    public let sandboxID: String

    public var hostAddress: IPv4Address { IPv4Address(Self.range.address.value + UInt32(index) * 4 + 1) }
    public var guestAddress: IPv4Address { IPv4Address(Self.range.address.value + UInt32(index) * 4 + 2) }
    public static let prefixLength = 30

    /// The sandbox's network namespace (`/run/netns/NAME`), the veth's host end, and the comment
    /// on its NAT rule.
    public var namespaceName: String { "rund-n\(index)" }
    public var namespacePath: String { "/run/netns/" + namespaceName }
    public var hostLink: String { "rund\(index)h" }
    public var ruleComment: String { "rund-n\(index)" }

    static func directory(_ stateRoot: String) -> String { stateRoot + "/network/leases" }

    /// Takes the lowest free block; throws when all are leased.
    static func take(stateRoot: String, sandboxID: String) throws -> AddressLease {
        try FileSystem.makeDirectories(directory(stateRoot), mode: 0o700)
        let directory = try FileDescriptor.open(directory(stateRoot), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { directory.close() }
        let used = Set(try FileSystem.entries(of: directory).compactMap(Int.init))
        let owner = ProcessIdentity.current()
        for index in 0..<count where !used.contains(index) {
            let file: FileDescriptor
            do {
                file = try FileSystem.open(at: directory, String(index), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600)
            } catch let error as SystemError where error.errno == EEXIST {
                continue  // Another process took it since the listing.
            }
            defer { file.close() }
            try file.writeAll("\(owner.pid) \(owner.startTime) \(sandboxID)\n")
            return AddressLease(index: index, owner: owner, sandboxID: sandboxID)
        }
        throw NetworkError("all \(count) sandbox networks of \(range) are in use")
    }

    /// Gives the block back (its file removed).
    func release(stateRoot: String) {
        try? FileSystem.unlink(at: nil, Self.directory(stateRoot) + "/\(index)")
    }

    /// Every lease on file (a file that cannot be parsed counts as one of a dead owner).
    static func all(stateRoot: String) -> [AddressLease] {
        guard let directory = try? FileDescriptor.open(directory(stateRoot), O_RDONLY | O_DIRECTORY | O_CLOEXEC) else { return [] }
        defer { directory.close() }
        let names = (try? FileSystem.entries(of: directory)) ?? []
        return names.compactMap { name -> AddressLease? in
            guard let index = Int(name), (0..<count).contains(index) else { return nil }
            let text =
                (try? FileSystem.open(at: directory, name, O_RDONLY | O_CLOEXEC))
                .flatMap { file in
                    defer { file.close() }; return try? file.readValue()
                } ?? ""
            // "pid start-time sandbox-id\n"
            let words = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            let owner =
                words.count == 3
                ? Int32(words[0]).flatMap { pid in UInt64(words[1]).map { ProcessIdentity(pid: pid, startTime: $0) } } : nil
            return AddressLease(
                index: index, owner: owner ?? ProcessIdentity(pid: 0, startTime: 0),
                sandboxID: words.count == 3 ? String(words[2]) : "")
        }
    }
}
