/// The one use of a raw host address outside this module: telling the hypervisor (KVM memory
/// slots) where each region is mapped. `package`, so no client outside rund sees it; inside rund,
/// only the code that registers memory slots calls it.
extension GuestMemory {
    /// One region as a hypervisor memory slot takes it.
    package struct HypervisorMapping {
        package let guestBase: GuestAddress
        package let size: Int
        package let host: UnsafeMutableRawPointer
        package let isReadOnly: Bool
    }

    /// Every region, in guest address order.
    package var hypervisorMappings: [HypervisorMapping] {
        regions.map { HypervisorMapping(guestBase: $0.guestBase, size: $0.size, host: $0.host, isReadOnly: $0.isReadOnly) }
    }
}

extension GuestRegion {
    /// A region kept outside any `GuestMemory` (a pmem range) as a hypervisor memory slot takes it.
    package var hypervisorMapping: GuestMemory.HypervisorMapping {
        GuestMemory.HypervisorMapping(guestBase: guestBase, size: size, host: host, isReadOnly: isReadOnly)
    }
}
