import Cgroups
import Storage

/// Doctor lines from the areas outside the VMM: cgroups and storage.
enum HostCheckExtensions {
    static func checks(stateRoot: String) -> [HostCheck] {
        [cgroups(), writableLayers(stateRoot: stateRoot)]
    }

    /// Reflink on the state root, or the XFS pool file rund falls back to.
    static func writableLayers(stateRoot: String) -> HostCheck {
        let probe = WritableLayerBackend.probe(stateRoot: stateRoot)
        return HostCheck(name: "reflink", status: .ok, detail: probe.summary, fix: nil, requiredForSandboxes: true)
    }

    static func cgroups() -> HostCheck {
        do {
            let host = try CgroupHost.detect()
            let wanted = host.mode == .v2 ? CgroupHost.wantedV2Controllers : CgroupHost.wantedV1Controllers
            let usable = host.writable && wanted.allSatisfy(host.controllers.contains)
            return HostCheck(
                name: "cgroups", status: usable ? .ok : .missing, detail: host.summary,
                fix: usable ? nil : "run as root on a host with the cpu, cpuset, memory, pids controllers mounted read-write",
                requiredForSandboxes: true)
        } catch {
            return HostCheck(
                name: "cgroups", status: .missing, detail: "\(error)",
                fix: "mount cgroupfs (v1 controllers or cgroup2) at /sys/fs/cgroup", requiredForSandboxes: true)
        }
    }
}
