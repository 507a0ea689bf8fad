#if canImport(Glibc)
import Glibc
#endif
import HostOS
import Synchronization
import TTRPC

/// The guest's network, configured from the first CreateContainer that carries one: loopback
/// up, then the interface with the requested MAC gets its MTU, address and routes. Every
/// container shares the guest's network namespace, so it is applied once per guest; a later
/// request may repeat the same network or leave it out, not change it.
final class GuestNetworkSetup: Sendable {
    /// What was applied; held while applying, so two creates cannot both configure the guest.
    private let applied = Mutex<GuestNetworkPlan?>(nil)
    /// How long the interface may take to appear: virtio-net may still be probing (its module
    /// loads at boot on the stock kernel; the device shows up after).
    private let interfaceWait: Duration

    init(interfaceWait: Duration = .seconds(5)) {
        self.interfaceWait = interfaceWait
    }

    /// Refuses, before anything else of the request is applied, a network this guest does not
    /// have when it has one already. (`configure` checks again, under the lock.)
    func checkSameAsApplied(_ plan: GuestNetworkPlan?) throws(TTRPCStatus) {
        guard let plan, let applied = applied.withLock({ $0 }), applied != plan else { return }
        throw Self.differentNetwork
    }

    private static let differentNetwork = TTRPCStatus(
        .failedPrecondition,
        "guest network: already configured differently (once per guest): a later container must send the same network or none")

    /// Applies `plan` (a request's network, already checked) unless this guest already has
    /// it. Without one only loopback is brought up. Returns the guest's network (nil: loopback
    /// only), which every container's /etc/hosts and /etc/resolv.conf are written from.
    func configure(_ plan: GuestNetworkPlan?) throws -> GuestNetworkPlan? {
        try applied.withLock { applied in
            guard let plan else {
                try Self.step("bring up lo") { try NetworkInterface.loopback.bringUp() }
                return applied
            }
            if let applied {
                guard applied == plan else { throw Self.differentNetwork }
                return applied
            }
            try apply(plan)
            applied = plan
            return plan
        }
    }

    /// A route already there counts as added, so a create that failed half-way can be retried.
    private func apply(_ plan: GuestNetworkPlan) throws {
        try Self.step("bring up lo") { try NetworkInterface.loopback.bringUp() }
        let interface = try waitForInterface(plan.mac)
        try Self.step("set the MTU") { try interface.setMTU(plan.mtu) }
        for prefix in plan.addresses {
            try Self.step("set the address \(prefix)") { try interface.setIPv4Address(prefix.address, prefixLength: prefix.length) }
        }
        try Self.step("bring up \(interface)") { try interface.bringUp() }
        for route in plan.routesToAdd {
            try Self.step("add a route") {
                do {
                    try interface.addIPv4Route(to: route.destination.address, prefixLength: route.destination.length, via: route.gateway)
                } catch let error as SystemError where error.errno == EEXIST {
                    return
                }
            }
        }
    }

    private func waitForInterface(_ mac: [UInt8]) throws -> NetworkInterface {
        let clock = ContinuousClock()
        let deadline = clock.now + interfaceWait
        while true {
            if let interface = try Self.step("find the interface", { try NetworkInterface.withHardwareAddress(mac) }) {
                return interface
            }
            guard clock.now < deadline else {
                throw TTRPCStatus(
                    .failedPrecondition,
                    "guest network: no interface with MAC \(GuestNetworkPlan.macText(mac)) appeared within \(interfaceWait)")
            }
            usleep(10_000)
        }
    }

    private static func step<T>(_ what: String, _ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch {
            throw TTRPCStatus(.failedPrecondition, "guest network: cannot \(what): \(error)")
        }
    }
}
