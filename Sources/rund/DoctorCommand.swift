import ArgumentParser
import Foundation
import Sandbox
import HostOS
import KVM

/// `rund doctor`: one line per capability, each with a fix when it is missing.
struct DoctorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "doctor",
        abstract: "Report what this host can do for rund, and how to fix what is missing.",
        discussion: "Exits 0 when the host can run sandboxes, 1 otherwise.")

    @OptionGroup var rootOptions: RootOptions
    @Flag(help: "Print one JSON object instead of the table.") var json = false

    func run() async throws {
        let root = StateRoot.resolve(rootOptions.root)
        let checks = HostChecks.all(stateRoot: root)
        let canRunSandboxes = checks.allSatisfy { $0.status != .missing || !$0.requiredForSandboxes }
        if json {
            try printJSON(DoctorReport(stateRoot: root, canRunSandboxes: canRunSandboxes, checks: checks))
        } else {
            for check in checks { print(check.line) }
            print(
                canRunSandboxes
                    ? "=> this host can run rund sandboxes"
                    : "=> this host cannot run rund sandboxes directly (see the lines marked 'missing')")
        }
        if !canRunSandboxes { throw ExitCode(1) }
    }
}

struct DoctorReport: Encodable {
    let stateRoot: String
    let canRunSandboxes: Bool
    let checks: [HostCheck]
}

struct HostCheck: Encodable {
    enum Status: String, Encodable { case ok, missing, info }
    let name: String
    let status: Status
    let detail: String
    let fix: String?
    /// Whether `rund run` needs this; the rest (rig, benchmarks) only informs.
    let requiredForSandboxes: Bool

    var line: String {
        let mark = status == .ok ? "ok     " : status == .missing ? "missing" : "info   "
        var text = "\(mark) \(name): \(detail)"
        if let fix, status == .missing { text += " -> \(fix)" }
        return text
    }
}

enum HostChecks {
    static func all(stateRoot: String) -> [HostCheck] {
        var checks = [kvmDevice(), stockKernelSupport(), kernelCache(stateRoot: stateRoot), imageDevice(stateRoot: stateRoot)]
        checks += requiredTools.map { tool(name: $0.name, package: $0.package, required: true) }
        checks += optionalTools.map { tool(name: $0.name, package: $0.package, required: false) }
        checks += HostCheckExtensions.checks(stateRoot: stateRoot)
        return checks
    }

    static func kvmDevice() -> HostCheck {
        switch KVMHostProbe.canCreateVM() {
        case .success:
            return HostCheck(name: "kvm", status: .ok, detail: "/dev/kvm opens and creates VMs", fix: nil, requiredForSandboxes: true)
        case .failure(let error):
            return HostCheck(
                name: "kvm", status: .missing, detail: "\(error)",
                fix: "load kvm_intel or kvm_amd and run as root (or a user in group kvm)", requiredForSandboxes: true)
        }
    }

    static func stockKernelSupport() -> HostCheck {
        switch KVMHostProbe.flavor() {
        case .hardware(let module):
            return HostCheck(
                name: "stock-kernel guests", status: .ok, detail: "hardware virtualization (\(module))", fix: nil,
                requiredForSandboxes: true)
        case .pvm:
            return HostCheck(
                name: "stock-kernel guests", status: .missing,
                detail: "this KVM is PVM (kvm_pvm): it runs freestanding guests, but a stock Linux kernel hangs early in boot",
                fix: "real guests need hardware virtualization (VT-x/AMD-V), or use the nested rig: scripts/rig, scripts/rig-run",
                requiredForSandboxes: true)
        case .unknown:
            return HostCheck(
                name: "stock-kernel guests", status: .info, detail: "no kvm_intel/kvm_amd/kvm_pvm module seen; untested KVM flavour",
                fix: nil, requiredForSandboxes: false)
        }
    }

    /// Which guest kernel sandboxes boot: rund's own when built, else Debian's stock one.
    static func kernelCache(stateRoot: String) -> HostCheck {
        let kernel = GuestKernel.preferred(stateRoot: stateRoot)
        let directory = kernel.directory(stateRoot: stateRoot)
        guard FileManager.default.fileExists(atPath: directory + "/vmlinuz") else {
            return HostCheck(
                name: "guest kernel", status: .missing, detail: "no cached guest kernel at \(directory)",
                fix: "run scripts/setup (add --root \(stateRoot) if not the default)", requiredForSandboxes: true)
        }
        let version =
            (try? String(contentsOfFile: directory + "/version", encoding: .utf8))?
            .trimmingCharacters(in: .whitespacesAndNewlines) ?? "unknown version"
        switch kernel {
        case .rund:
            return HostCheck(
                name: "guest kernel", status: .ok, detail: "rund's own, \(version) at \(directory) (--kernel stock for Debian's)",
                fix: nil, requiredForSandboxes: true)
        case .stock:
            return HostCheck(
                name: "guest kernel", status: .info, detail: "Debian's stock kernel, \(version) at \(directory) (rund's own is not built)",
                fix: "scripts/build-guest-kernel builds rund's own, which boots faster in less memory", requiredForSandboxes: true)
        }
    }

    /// How sandboxes read their image: virtio-pmem with DAX when the cached kernel can, else virtio-blk.
    static func imageDevice(stateRoot: String) -> HostCheck {
        let kernel = GuestKernel.preferred(stateRoot: stateRoot).directory(stateRoot: stateRoot)
        guard FileManager.default.fileExists(atPath: kernel + "/vmlinuz") else {
            return HostCheck(
                name: "image device", status: .info, detail: "unknown until a guest kernel is cached", fix: nil, requiredForSandboxes: false
            )
        }
        if let reason = GuestInitramfs.pmemUnsupportedReason(kernelDirectory: kernel) {
            return HostCheck(
                name: "image device", status: .info,
                detail: "virtio-blk (each guest caches the image itself): virtio-pmem is unavailable, \(reason)",
                fix:
                    "use a guest kernel with CONFIG_FS_DAX=y and virtio_pmem and nd_pmem (rund's own has them: scripts/build-guest-kernel)",
                requiredForSandboxes: false)
        }
        let agent =
            GuestAgentImage.usable(kernelDirectory: kernel)
            ? "; the agent boots from its own image the same way (no initramfs)" : ""
        return HostCheck(
            name: "image device", status: .ok,
            detail: "virtio-pmem, EROFS mounted dax: sandboxes of one image share its page cache (a template's clones use virtio-blk)"
                + agent,
            fix: nil, requiredForSandboxes: false)
    }

    static let requiredTools: [(name: String, package: String)] = [
        ("mkfs.erofs", "erofs-utils"), ("mkfs.ext4", "e2fsprogs"), ("mkfs.xfs", "xfsprogs"), ("cpio", "cpio"),
    ]
    static let optionalTools: [(name: String, package: String)] = [
        ("qemu-system-x86_64", "qemu-system-x86"), ("busybox", "busybox-static"), ("iasl", "acpica-tools"),
        ("skopeo", "skopeo"), ("docker-registry", "docker-registry"),
    ]

    static func tool(name: String, package: String, required: Bool) -> HostCheck {
        if let path = findOnPath(name) {
            return HostCheck(name: "tool \(name)", status: .ok, detail: path, fix: nil, requiredForSandboxes: required)
        }
        return HostCheck(
            name: "tool \(name)", status: required ? .missing : .info, detail: "not found on PATH",
            fix: "apt-get install \(package) (scripts/setup installs it)", requiredForSandboxes: required)
    }

    static func findOnPath(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        let dirs =
            path.split(separator: ":").map(String.init) + ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
        return dirs.lazy.map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }
}
