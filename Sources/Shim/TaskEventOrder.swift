/// The order containerd requires of one container's task events (its runtime v2 README, and
/// the races containerd#9719 fixed in the runc shim), as a state machine that decides what may
/// be published now and what must wait:
/// - create < start < exit < delete; a delete may follow a create directly;
/// - per exec: exec-added < exec-started < its exit;
/// - a process's exit never goes before its start event, however fast it died;
/// - the main process's exit goes after the exits of every exec that was started (they die
///   with it), unless `releaseHeldExit` gives up waiting for them.
/// Callers feed it under one lock and publish what it returns in order, through one queue.
struct TaskEventOrder: Sendable {
    enum Event: Sendable, Equatable {
        case create
        case start
        case execAdded(execID: String)
        case execStarted(execID: String)
        /// `execID` "" is the main process.
        case exit(execID: String, status: UInt32)
        case oom
        case delete
        case paused
        case resumed
    }

    private var startPublished: Set<String> = []
    private var runningExecs: Set<String> = []
    /// Exits that came before their process's start event was out.
    private var heldUntilStart: [String: [Event]] = [:]
    /// The main process's exit (with its OOM event), waiting for the execs' exits.
    private var heldMainExit: [Event]?
    private var exited: Set<String> = []
    private var isDeleted = false

    mutating func created() -> [Event] { [.create] }

    mutating func execAdded(_ execID: String) -> [Event] { [.execAdded(execID: execID)] }

    /// A process's start was answered: its start event, then whatever exit it already had.
    mutating func started(_ execID: String) -> [Event] {
        guard !isDeleted, !startPublished.contains(execID) else { return [] }
        startPublished.insert(execID)
        if !execID.isEmpty && !exited.contains(execID) { runningExecs.insert(execID) }
        var events: [Event] = [execID.isEmpty ? .start : .execStarted(execID: execID)]
        if let held = heldUntilStart.removeValue(forKey: execID) {
            events += execID.isEmpty ? hold(mainExit: held) : held
        }
        return events
    }

    /// A process ended with `status` (`oom`: the guest's OOM killer fired while it ran).
    mutating func exited(_ execID: String, status: UInt32, oom: Bool = false) -> [Event] {
        // After the delete nothing of the task is published any more.
        guard !isDeleted, !exited.contains(execID) else { return [] }
        exited.insert(execID)
        let events: [Event] = (oom ? [.oom] : []) + [.exit(execID: execID, status: status)]
        guard startPublished.contains(execID) else {
            heldUntilStart[execID] = events
            return []
        }
        if execID.isEmpty { return hold(mainExit: events) }
        runningExecs.remove(execID)
        return events + releaseMainExitIfDue()
    }

    /// An exec that will never run or report again (deleted unstarted, or given up on).
    mutating func execGone(_ execID: String) -> [Event] {
        guard !isDeleted else { return [] }
        runningExecs.remove(execID)
        heldUntilStart.removeValue(forKey: execID)
        return releaseMainExitIfDue()
    }

    /// Gives up waiting for execs: the main process's exit goes out now.
    mutating func releaseHeldExit() -> [Event] {
        guard !isDeleted else { return [] }
        runningExecs.removeAll()
        return releaseMainExitIfDue()
    }

    /// True while the main process's exit waits for exec exits.
    var holdsMainExit: Bool { heldMainExit != nil }

    mutating func deleted() -> [Event] {
        guard !isDeleted else { return [] }
        // An exit held back until now goes first: delete always follows it.
        var events = releaseHeldExit()
        isDeleted = true
        if let held = heldUntilStart.removeValue(forKey: "") { events += held }
        return events + [.delete]
    }

    private mutating func hold(mainExit events: [Event]) -> [Event] {
        heldMainExit = events
        return releaseMainExitIfDue()
    }

    private mutating func releaseMainExitIfDue() -> [Event] {
        guard runningExecs.isEmpty, let events = heldMainExit else { return [] }
        heldMainExit = nil
        return events
    }
}
