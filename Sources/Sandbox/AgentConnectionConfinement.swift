import HostOS

/// The agent connection's reader and writer threads parse and frame what the guest's agent
/// sends; they only move bytes between memory buffers (the vsock device is in this process), so
/// they need nothing beyond what every thread needs: no files, no sockets, no ioctls.
enum AgentConnectionConfinement {
    static let filter = SeccompFilter(name: "agent connection", allowing: SeccompFilter.threadEssentials)
}
