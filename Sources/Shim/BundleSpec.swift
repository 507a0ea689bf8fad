#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import FoundationEssentials
import HostOS

/// The part of an OCI runtime spec (the bundle's `config.json`, or an Exec's process) that
/// rund honours. Everything else (namespaces, capabilities, seccomp, devices) is the guest's
/// business: the VM is the boundary, and the agent gives every container its own namespaces.
struct OCIRuntimeSpec: Decodable, Sendable {
    struct Process: Decodable, Sendable {
        struct User: Decodable, Sendable {
            var uid: UInt32?
            var gid: UInt32?
            var additionalGids: [UInt32]?
        }
        struct Rlimit: Decodable, Sendable {
            var type: String
            var hard: UInt64
            var soft: UInt64
        }
        struct ConsoleSize: Decodable, Sendable {
            var height: UInt32
            var width: UInt32
        }
        var terminal: Bool?
        var consoleSize: ConsoleSize?
        var user: User?
        var args: [String]?
        var env: [String]?
        var cwd: String?
        var rlimits: [Rlimit]?
    }
    struct Mount: Decodable, Sendable {
        var destination: String
        var type: String?
        var source: String?
        var options: [String]?
    }
    struct Linux: Decodable, Sendable {
        struct Namespace: Decodable, Sendable {
            var type: String
            var path: String?
        }
        var resources: Resources?
        var namespaces: [Namespace]?
    }
    struct Resources: Decodable, Sendable {
        struct Memory: Decodable, Sendable {
            var limit: Int64?
        }
        struct CPU: Decodable, Sendable {
            var shares: UInt64?
            var quota: Int64?
            var period: UInt64?
            var cpus: String?
        }
        var memory: Memory?
        var cpu: CPU?
    }
    var process: Process?
    var hostname: String?
    var mounts: [Mount]?
    var annotations: [String: String]?
    var linux: Linux?
}

/// What a container's `config.json` asks of its sandbox.
public struct ContainerPlan: Sendable {
    /// The main process, ready for the agent (stdin and terminal are set by the task's stdio).
    public var process: AgentProcessSpec
    public var terminalSize: WindowSize?
    public var hostname: String?
    public var annotations: [String: String]
    /// From `linux.resources`: the VM's size (nil: the shim's default); for a pod's later
    /// container, the limit of its own cgroup in the pod's VM instead (`memoryLimitBytes`).
    public var memoryMiB: Int?
    public var memoryLimitBytes: Int64?
    public var vcpus: Int?
    public var cpuQuotaMicros: Int64?
    public var cpuPeriodMicros: Int64?
    /// The pod's network namespace (made and wired by CNI): the VM's interface takes over its
    /// interface (`NetworkMode.namespace`). nil: the node's network for a host-network pod, or
    /// none for a container of its own (`ctr run` without --net-host).
    public var networkNamespace: String?

    /// Where the container goes, from CRI's annotations (`../shared/docs/shimv2.md` 6.1).
    public var podRole: PodRole { PodRole(annotations: annotations) }
}

/// Which sandbox a container belongs to, from the annotations CRI (containerd 1.6) puts in
/// config.json: a pod's sandbox (pause) container makes the pod's VM, its later containers go
/// into that VM; a spec without them (`ctr run`) is a pod of one.
public enum PodRole: Sendable, Equatable {
    case single
    case podSandbox
    /// A container of the pod whose sandbox container has this id.
    case podMember(sandboxID: String)

    public static let sandboxMemoryKey = "io.kubernetes.cri.sandbox-memory"
    public static let sandboxCPUQuotaKey = "io.kubernetes.cri.sandbox-cpu-quota"
    public static let sandboxCPUPeriodKey = "io.kubernetes.cri.sandbox-cpu-period"

    init(annotations: [String: String]) {
        switch annotations[ShimNames.containerTypeAnnotation] {
        case "sandbox": self = .podSandbox
        case "container":
            if let id = annotations[ShimNames.sandboxIDAnnotation], !id.isEmpty { self = .podMember(sandboxID: id) } else { self = .single }
        default: self = .single
        }
    }

    /// Whether the container's Create boots a VM.
    public var makesVM: Bool { if case .podMember = self { false } else { true } }
}

/// Reads `config.json` and Exec process specs into what the sandbox runs, refusing what rund
/// cannot honour with one line that says what.
public enum BundleSpec {
    /// Largest config.json read (containerd's own specs are a few KiB).
    static let maximumSize = 4 << 20
    /// Below this a Linux guest with the agent does not boot reliably.
    public static let minimumMemoryMiB = 64

    public static func load(bundle: String) throws -> ContainerPlan {
        let bytes: [UInt8]
        do {
            bytes = try FileDescriptor.open(bundle + "/config.json", O_RDONLY).readToEnd(limit: maximumSize)
        } catch {
            throw ShimError(.failedPrecondition, "cannot read the bundle's config.json: \(error)")
        }
        return try plan(configJSON: bytes)
    }

    public static func plan(configJSON bytes: [UInt8]) throws -> ContainerPlan {
        let spec: OCIRuntimeSpec
        do {
            spec = try JSONDecoder().decode(OCIRuntimeSpec.self, from: Data(bytes))
        } catch {
            throw ShimError(.invalidArgument, "config.json is not a valid OCI runtime spec: \(describe(error))")
        }
        guard let process = spec.process else { throw ShimError(.invalidArgument, "config.json has no process") }
        let role = PodRole(annotations: spec.annotations ?? [:])
        try checkMounts(spec.mounts ?? [], role: role)
        // The sandbox's network namespace (CNI's, pinned under /var/run/netns): the VM takes over
        // its interface. A pod's later containers name the sandbox's namespaces by /proc paths:
        // the VM's, ignored.
        var networkNamespace: String? = nil
        if role.makesVM, let network = spec.linux?.namespaces?.first(where: { $0.type == "network" }),
            let path = network.path, !path.isEmpty
        {
            guard path.hasPrefix("/"), path.utf8.count <= 4096, !path.utf8.contains(0), !path.contains("/../") else {
                throw ShimError(.invalidArgument, "config.json names the network namespace \"\(path.prefix(200))\": not an absolute path")
            }
            networkNamespace = path
        }
        var plan = ContainerPlan(
            process: try processSpec(process, what: "config.json"),
            terminalSize: process.consoleSize.flatMap(windowSize),
            hostname: spec.hostname.flatMap { $0.isEmpty ? nil : $0 },
            annotations: spec.annotations ?? [:])
        plan.networkNamespace = networkNamespace
        if let hostname = plan.hostname {
            guard hostname.utf8.count <= 64, hostname.utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7f }) else {
                throw ShimError(.invalidArgument, "config.json hostname \"\(hostname.prefix(80))\" is not a valid host name")
            }
        }
        if let resources = spec.linux?.resources { try apply(resources, to: &plan, sizesVM: plan.podRole.makesVM) }
        return plan
    }

    /// An Exec's process: the `Any` containerd sends holds the OCI Process as JSON.
    public static func execProcess(json bytes: [UInt8]) throws -> (AgentProcessSpec, WindowSize?) {
        let process: OCIRuntimeSpec.Process
        do {
            process = try JSONDecoder().decode(OCIRuntimeSpec.Process.self, from: Data(bytes))
        } catch {
            throw ShimError(.invalidArgument, "the exec's process spec is not a valid OCI process: \(describe(error))")
        }
        return (try processSpec(process, what: "the exec's process spec"), process.consoleSize.flatMap(windowSize))
    }

    static func processSpec(_ process: OCIRuntimeSpec.Process, what: String) throws -> AgentProcessSpec {
        guard let args = process.args, !args.isEmpty else { throw ShimError(.invalidArgument, "\(what) has no args") }
        let cwd = process.cwd.flatMap { $0.isEmpty ? nil : $0 } ?? "/"
        guard cwd.hasPrefix("/") else { throw ShimError(.invalidArgument, "\(what): cwd \"\(cwd.prefix(200))\" is not absolute") }
        return .with {
            $0.args = args
            $0.env = process.env ?? []
            $0.cwd = cwd
            $0.user = .with {
                $0.uid = process.user?.uid ?? 0
                $0.gid = process.user?.gid ?? 0
                $0.additionalGids = process.user?.additionalGids ?? []
            }
            $0.rlimits = (process.rlimits ?? []).map { limit in
                .with {
                    $0.type = limit.type
                    $0.soft = limit.soft
                    $0.hard = limit.hard
                }
            }
        }
    }

    static func windowSize(_ size: OCIRuntimeSpec.Process.ConsoleSize) -> WindowSize? {
        guard let rows = UInt16(exactly: size.height), let columns = UInt16(exactly: size.width), rows > 0, columns > 0 else { return nil }
        return WindowSize(rows: rows, columns: columns)
    }

    /// The mounts every runtime spec carries (the guest gives each container its own /proc,
    /// /dev, /sys and a /run), by destination and type. Anything else would need a host path
    /// or filesystem shared into the VM, which rund cannot do yet: refused, not dropped.
    static let providedMounts: [String: Set<String>] = [
        "/proc": ["proc"], "/dev": ["tmpfs"], "/dev/pts": ["devpts"], "/dev/shm": ["tmpfs", "shm"],
        "/dev/mqueue": ["mqueue"], "/sys": ["sysfs"], "/sys/fs/cgroup": ["cgroup", "cgroup2"], "/run": ["tmpfs"],
    ]

    /// What CRI binds into every pod's containers from the host (the pod's hosts, hostname and
    /// resolv.conf files, its /dev/shm, the termination log). The guest has its own of each
    /// (the image's files, its own /dev): left out, not refused, or no pod could run.
    static let podFileMounts: Set<String> = ["/etc/hosts", "/etc/hostname", "/etc/resolv.conf", "/dev/shm", "/dev/termination-log"]

    static func checkMounts(_ mounts: [OCIRuntimeSpec.Mount], role: PodRole = .single) throws {
        for mount in mounts {
            let type = mount.type ?? (mount.options?.contains(where: { $0 == "bind" || $0 == "rbind" }) == true ? "bind" : "")
            if providedMounts[mount.destination]?.contains(type) == true { continue }
            if role != .single, type == "bind", podFileMounts.contains(mount.destination) { continue }
            let source = mount.source.map { " from \($0.prefix(200))" } ?? ""
            throw ShimError(
                .failedPrecondition,
                "rund cannot give the sandbox the mount \(mount.destination.prefix(200)) (\(type.isEmpty ? "no type" : type)\(source)): "
                    + "sharing host paths or extra filesystems with the guest is not supported yet")
        }
    }

    /// `linux.resources`: memory becomes the VM's RAM, a CPU quota its vCPU count (rounded up)
    /// and the cgroup's bandwidth; shares and cpusets are left to the host's cgroup defaults.
    /// A pod's later container (`sizesVM` false) keeps its memory limit for its cgroup in the VM.
    static func apply(_ resources: OCIRuntimeSpec.Resources, to plan: inout ContainerPlan, sizesVM: Bool = true) throws {
        if let limit = resources.memory?.limit, limit > 0 {
            plan.memoryLimitBytes = limit
            if sizesVM {
                let mebibytes = limit >> 20
                guard mebibytes >= minimumMemoryMiB else {
                    throw ShimError(.invalidArgument, "memory limit \(limit) bytes is below the \(minimumMemoryMiB) MiB a sandbox needs")
                }
                plan.memoryMiB = Int(clamping: mebibytes)
            }
        }
        if let cpu = resources.cpu, let quota = cpu.quota, quota > 0 {
            let period = Int64(clamping: cpu.period ?? 100_000)
            guard period > 0 else { throw ShimError(.invalidArgument, "cpu period must be positive") }
            plan.vcpus = vcpus(quota: quota, period: period)
            plan.cpuQuotaMicros = quota
            plan.cpuPeriodMicros = period
        }
    }

    /// As many vCPUs as a CPU quota covers, rounded up (`period` > 0).
    static func vcpus(quota: Int64, period: Int64) -> Int {
        let (whole, rest) = quota.quotientAndRemainder(dividingBy: period)
        return Int(clamping: whole + (rest > 0 ? 1 : 0))
    }

    static func describe(_ error: Error) -> String {
        switch error {
        case DecodingError.typeMismatch(_, let context), DecodingError.valueNotFound(_, let context),
            DecodingError.keyNotFound(_, let context), DecodingError.dataCorrupted(let context):
            let path = context.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
            return path.isEmpty ? context.debugDescription : "\(path): \(context.debugDescription)"
        default:
            return "\(error)"
        }
    }
}
