import AgentProtocol
import HostOS
import Storage
import Network
import VMM

/// What the container's root filesystem is made from.
public enum SandboxRoot: Sendable, Equatable {
    /// An image in the store, by reference.
    case image(String)
    /// A host directory, packed into a throwaway EROFS for this sandbox (no image config: the
    /// command must be given).
    case directory(String)
    /// A ready EROFS file (no image config: the process must be given), e.g. the one the shim
    /// made of a containerd snapshot's layers.
    case erofs(String)
}

/// How the guest reads the image (the container's read-only lower layer).
public enum RootfsDevice: String, Sendable, CaseIterable {
    /// virtio-pmem with EROFS mounted `dax`: every sandbox of an image maps the same host
    /// page-cache pages. The default when the guest kernel has the modules and no template is used.
    case pmem
    /// virtio-blk: the guest reads the image into its own page cache (templates' clones use it).
    case blk
}

/// What one `rund run` asks for. nil fields take the image config's values.
public struct SandboxSpec: Sendable {
    public var id: String
    public var root: SandboxRoot
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
    /// The process reads the host process's standard input (else /dev/null).
    public var interactive: Bool
    /// The process gets a pseudo-terminal of this size (stdout and stderr merged onto it).
    public var terminal: WindowSize?
    /// End the sandbox when its guest makes no progress for this long (`VMConfiguration.stallTimeout`).
    public var stallTimeout: Duration?
    /// Test-only VMM behaviour (`VMConfiguration.testHooks`).
    public var testHooks: Set<VMConfiguration.TestHook> = []
    /// The container's hostname (default: the sandbox id, cut to 63 characters).
    public var hostname: String?
    /// How long the guest agent may take to answer its first connection (a cold boot's kernel
    /// boot included).
    public var agentTimeout: Duration = .seconds(120)
    /// Cold boot, or a clone of a template (`SandboxTemplate`).
    public var template: SandboxTemplate.Choice = .automatic
    /// The image's device; nil: pmem when the kernel supports it and no template is used, else blk.
    public var rootfsDevice: RootfsDevice? = nil
    /// The main process exactly as given (the shim's config.json), instead of one resolved from
    /// the image config and the fields above.
    public var process: AgentProcessSpec?
    /// When the main process has printed nothing for this long, the memory its guest has free
    /// or in its page cache goes back to the host (`IdleMemoryReclaimer`); nil: never. Both ways
    /// need the VM's balloon device; a template's clone has its template's.
    public var reclaimIdleAfter: Duration? = nil
    /// How an idle sandbox's memory goes back: its page cache dropped (free page reporting then
    /// returns it), or its balloon inflated.
    public var reclaimIdleBy: IdleReclaimMethod = .cache
    /// A cold-booted guest's RAM in 4 KiB host pages (`VMConfiguration.smallGuestPages`): less
    /// idle memory, a slower boot. A clone's RAM is its template's file, whatever this says.
    public var smallGuestPages = false
    /// Room for this many more containers in the VM (a Kubernetes pod's): each slot is a pair of
    /// drives (image, writable layer) left empty at boot and filled by `RunningSandbox.addContainer`.
    /// With slots the first container gets a guest cgroup of its own, as the later ones do.
    public var containerSlots: Int = 0
    /// The sandbox's network (`rund run --network`): none (loopback only), its own namespace
    /// with NAT (`default`), or a namespace made by someone else (CNI's). docs/network.md.
    public var network: NetworkMode = .none
    /// Offer the guest checksum and TCP segmentation offloads on its network interface.
    public var networkOffloads = true

    /// The writable layers the sandbox may hold at once: its own and one per container slot.
    var writableSizeMiBWithSlots: Int { writableSizeMiB * (1 + containerSlots) }

    public init(
        id: String, root: SandboxRoot, command: [String] = [], environment: [String] = [],
        workingDirectory: String? = nil, user: (uid: UInt32, gid: UInt32)? = nil,
        memoryMiB: Int = 256, vcpuCount: Int = 1, writableSizeMiB: Int = 64, consolePath: String? = nil,
        interactive: Bool = false, terminal: WindowSize? = nil, stallTimeout: Duration? = nil,
        testHooks: Set<VMConfiguration.TestHook> = []
    ) {
        self.id = id
        self.root = root
        self.command = command
        self.environment = environment
        self.workingDirectory = workingDirectory
        self.user = user
        self.memoryMiB = memoryMiB
        self.vcpuCount = vcpuCount
        self.writableSizeMiB = writableSizeMiB
        self.consolePath = consolePath
        self.interactive = interactive
        self.terminal = terminal
        self.stallTimeout = stallTimeout
        self.testHooks = testHooks
    }

    /// A sandbox of image `image` (a reference in the store).
    public init(
        id: String, image: String, command: [String] = [], environment: [String] = [],
        workingDirectory: String? = nil, user: (uid: UInt32, gid: UInt32)? = nil,
        memoryMiB: Int = 256, vcpuCount: Int = 1, writableSizeMiB: Int = 64, consolePath: String? = nil,
        stallTimeout: Duration? = nil
    ) {
        self.init(
            id: id, root: .image(image), command: command, environment: environment, workingDirectory: workingDirectory,
            user: user, memoryMiB: memoryMiB, vcpuCount: vcpuCount, writableSizeMiB: writableSizeMiB, consolePath: consolePath,
            stallTimeout: stallTimeout)
    }

    /// Parses `UID[:GID]` (numbers only: the host cannot read the image's /etc/passwd).
    public static func parseUser(_ text: String) throws -> (uid: UInt32, gid: UInt32) {
        let parts = text.split(separator: ":", omittingEmptySubsequences: false)
        guard (1...2).contains(parts.count), let uid = UInt32(parts[0]),
            let gid = parts.count == 2 ? UInt32(parts[1]) : uid
        else {
            throw SandboxError("user '\(text)' must be UID or UID:GID in numbers, e.g. 1000:1000")
        }
        return (uid, gid)
    }

    /// The process to start: argv, env, cwd and user, from this spec over the image config.
    func process(config: OCI.ImageConfiguration.Config) throws -> (args: [String], env: [String], cwd: String, uid: UInt32, gid: UInt32) {
        let args = (config.entrypoint ?? []) + (command.isEmpty ? (config.command ?? []) : command)
        guard !args.isEmpty else {
            switch root {
            case .directory: throw SandboxError(.noCommand, "a directory root has no image config to take a command from")
            case .erofs: throw SandboxError("a root without an image config needs the process given")
            case .image: break
            }
            throw SandboxError(.noCommand, "the image has no Entrypoint or Cmd")
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
        // As docker does: a terminal needs a TERM to be usable by full-screen programs.
        if terminal != nil, !env.contains(where: { $0.hasPrefix("TERM=") }) { env.append("TERM=xterm") }
        let cwd = workingDirectory ?? config.workingDirectory.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        let user = try self.user ?? config.user.flatMap { $0.isEmpty ? nil : try Self.parseUser($0) } ?? (0, 0)
        return (args, env, cwd, user.uid, user.gid)
    }

    /// The agent's ProcessSpec for the process `process(config:)` resolves, with its stdio.
    func processSpec(config: OCI.ImageConfiguration.Config) throws -> AgentProcessSpec {
        if let given = self.process { return given }
        let process = try process(config: config)
        return .with {
            $0.args = process.args
            $0.env = process.env
            $0.cwd = process.cwd
            $0.user = .with {
                $0.uid = process.uid; $0.gid = process.gid
            }
            $0.openStdin = interactive
            if let terminal {
                $0.terminal = .with { $0.size = AgentWindowSize(terminal) }
            }
        }
    }
}

extension AgentWindowSize {
    public init(_ size: WindowSize) {
        self.init()
        rows = UInt32(size.rows)
        columns = UInt32(size.columns)
        widthPixels = UInt32(size.widthPixels)
        heightPixels = UInt32(size.heightPixels)
    }
}
