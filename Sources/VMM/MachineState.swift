import HostOS
import Synchronization

/// The one-way "this VM is over" latch: the first reason recorded wins, and whoever waits in
/// `waitForExit()` wakes up.
final class MachineState: Sendable {
    private let exit = Mutex<MachineExit?>(nil)
    private let wakeup: EventFD

    init() throws {
        wakeup = try EventFD()
    }

    var isFinished: Bool { exit.withLock { $0 != nil } }

    var result: MachineExit? { exit.withLock { $0 } }

    /// Records `reason` unless a reason was already recorded. Returns true for the first caller.
    @discardableResult
    func finish(_ reason: MachineExit) -> Bool {
        let first = exit.withLock { current -> Bool in
            guard current == nil else { return false }
            current = reason
            return true
        }
        if first { try? wakeup.signal() }
        return first
    }

    func waitForExit() -> MachineExit {
        while true {
            if let result { return result }
            _ = try? wakeup.wait()
        }
    }

    /// The exit reason once recorded, or nil when `milliseconds` pass first.
    func waitForExit(milliseconds: Int32) -> MachineExit? {
        if let result { return result }
        if (try? wakeup.descriptor.waitReadable(milliseconds: milliseconds)) == true { _ = try? wakeup.wait() }
        return result
    }
}
