#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import HostOS
import TTRPC

/// What makes this guest its own when it may be one of many copies of a saved template: the
/// host's entropy in the RNG (reseeded, so no two clones draw the same numbers) and the host's
/// wall clock (a clone wakes with the template's). Applied before a container is made, so no
/// container code ever sees the template's RNG state or time.
enum GuestIdentity {
    static let entropyRange = 32...512

    /// Checks `identity` first, then applies it: nothing changes when it is refused.
    static func apply(_ identity: AgentGuestIdentity) throws {
        let entropy = Array(identity.entropy)
        guard entropy.isEmpty || entropyRange.contains(entropy.count) else {
            throw TTRPCStatus(
                .invalidArgument,
                "identity entropy must be \(entropyRange.lowerBound) to \(entropyRange.upperBound) bytes, not \(entropy.count)")
        }
        guard identity.hostRealtimeNs >= 0 else {
            throw TTRPCStatus(.invalidArgument, "identity host_realtime_ns must not be negative")
        }
        do {
            if !entropy.isEmpty {
                let random = try FileDescriptor.open("/dev/urandom", O_RDWR | O_CLOEXEC)
                defer { random.close() }
                try KernelRandom.mix(entropy, through: random)
            }
            if identity.hostRealtimeNs > 0 { try RealtimeClock.set(nanoseconds: identity.hostRealtimeNs) }
        } catch {
            throw TTRPCStatus(.internal, "cannot take the sandbox's identity: \(error)")
        }
    }
}
