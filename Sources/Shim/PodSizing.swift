/// The size of the VM a container's Create boots. A pod's sandbox container: the pod-level sums
/// CRI passes in annotations (kubelet's pod overhead plus its containers' limits) plus the
/// shim's `pod_overhead_mib` for the guest kernel and agent, and as many vCPUs as the pod's CPU
/// quota covers (rounded up); a pod without limits, or a single container, takes config.json's
/// limits, else the shim's defaults.
struct PodSizing: Equatable {
    let memoryMiB: Int
    let vcpus: Int

    init(memoryMiB: Int, vcpus: Int) {
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
    }

    init(plan: ContainerPlan, configuration: ShimConfiguration) {
        var memoryMiB = plan.memoryMiB ?? configuration.memoryMiB
        var vcpus = plan.vcpus ?? configuration.vcpus
        if plan.podRole == .podSandbox {
            if let bytes = plan.annotations[PodRole.sandboxMemoryKey].flatMap(Int64.init), bytes > 0 {
                memoryMiB = max(Int(clamping: bytes >> 20) + configuration.podOverheadMiB, BundleSpec.minimumMemoryMiB)
            }
            if let quota = plan.annotations[PodRole.sandboxCPUQuotaKey].flatMap(Int64.init), quota > 0 {
                let period = plan.annotations[PodRole.sandboxCPUPeriodKey].flatMap(Int64.init).flatMap { $0 > 0 ? $0 : nil } ?? 100_000
                vcpus = BundleSpec.vcpus(quota: quota, period: period)
            }
        }
        self.memoryMiB = memoryMiB
        self.vcpus = vcpus
    }
}
