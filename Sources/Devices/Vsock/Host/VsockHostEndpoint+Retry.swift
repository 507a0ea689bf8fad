extension VsockHostEndpoint {
    /// Connects to a guest port that may not be listening yet (the guest is still booting: its
    /// driver resets the device on probe and the service listens only later). Refused, reset and
    /// timed-out attempts are retried every `interval` until `limit` has passed or `giveUp()` says
    /// the guest is gone; then the last error is thrown.
    public func connect(
        guestPort: UInt32, retryingFor limit: Duration, interval: Duration = .milliseconds(100),
        giveUp: () -> Bool = { false }
    ) async throws -> VsockStream {
        let deadline = ContinuousClock.now + limit
        while true {
            do {
                return try connect(guestPort: guestPort, timeout: .seconds(5))
            } catch {
                switch error {
                case .connectionRefused, .connectionReset, .timedOut:
                    guard ContinuousClock.now < deadline, !giveUp() else { throw error }
                    try await Task.sleep(for: interval)
                default:
                    throw error
                }
            }
        }
    }
}
