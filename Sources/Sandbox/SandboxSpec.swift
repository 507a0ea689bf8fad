import Storage

/// What one `rund run` asks for. nil fields take the image config's values.
public struct SandboxSpec: Sendable {
    public var id: String
    public var image: String
    /// Replaces the image's Cmd (its Entrypoint stays), as `docker run IMAGE CMD...` does.
    public var command: [String]
    /// `K=V` entries added after (and overriding) the image's environment.
    public var environment: [String]
    public var workingDirectory: String?
    public var user: (uid: UInt32, gid: UInt32)?
    public var memoryMiB: Int
    public var vcpuCount: Int
    public var writableSizeMiB: Int
    /// Where the guest's serial console goes (nil: nowhere).
    public var consolePath: String?

    public init(id: String, image: String, command: [String] = [], environment: [String] = [],
                workingDirectory: String? = nil, user: (uid: UInt32, gid: UInt32)? = nil,
                memoryMiB: Int = 256, vcpuCount: Int = 1, writableSizeMiB: Int = 64, consolePath: String? = nil) {
        self.id = id
        self.image = image
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.writableSizeMiB = writableSizeMiB
        self.consolePath = consolePath
    }

    /// Parses `UID[:GID]` (numbers only: the host cannot read the image's /etc/passwd).
    public static func parseUser(_ text: String) throws -> (uid: UInt32, gid: UInt32) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let uid = UInt32(parts[0]),
              let gid = parts.count == 2 ? UInt32(parts[1]) : uid else {
            throw SandboxError("user '\(text)' must be UID or UID:GID in numbers, e.g. 1000:1000")
        }
        return (uid, gid)
    }

    /// The process to start: argv, env, cwd and user, from this spec over the image config.
    func process(config: OCI.ImageConfiguration.Config) throws -> (args: [String], env: [String], cwd: String, uid: UInt32, gid: UInt32) {
        let args = (config.entrypoint ?? []) + (command.isEmpty ? (config.command ?? []) : command)
        guard !args.isEmpty else {
            throw SandboxError("the image has no Entrypoint or Cmd: give the command after --")
        }
        var env = config.environment ?? []
        if !env.contains(where: { $0.hasPrefix("PATH=") }) {
            env.insert("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", at: 0)
        }
        for entry in environment {
            guard let equals = entry.firstIndex(of: "="), equals != entry.startIndex else {
                throw SandboxError("environment entry '\(entry)' must be KEY=VALUE")
            }
            let key = entry[...equals]
            env.removeAll { $0.hasPrefix(key) }
            env.append(entry)
        }
        let cwd = workingDirectory ?? config.workingDirectory.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let user = try self.user ?? config.user.flatMap { $0.isEmpty ? nil : try Self.parseUser($0) } ?? (0, 0)
        return (args, env, cwd, user.uid, user.gid)
    }
}
