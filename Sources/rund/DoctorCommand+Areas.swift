import Cgroups
import Network
import Storage

/// Doctor lines from the areas outside the VMM: cgroups, storage and networks.
enum HostCheckExtensions {
    static func checks(stateRoot: String) -> [HostCheck] {
        [cgroups(), writableLayers(stateRoot: stateRoot), networks()]
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

    /// `--network default|netns:` (not needed for the default, `none`).
    static func networks() -> HostCheck {
        let missing = NetworkTools.missingForSandboxNetworks()
        return HostCheck(
            name: "networks", status: missing.isEmpty ? .ok : .missing,
            detail: missing.isEmpty ? "iproute2, iptables and /dev/net/tun for --network" : "no " + missing.joined(separator: ", "),
            fix: missing.isEmpty ? nil : "apt-get install iproute2 iptables, and load the tun module", requiredForSandboxes: false)
    }
}
