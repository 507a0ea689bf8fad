@testable import Shim
import Testing

/// The event order containerd requires, whatever order the shim learns things in.
struct TaskEventOrderTests {
    typealias Event = TaskEventOrder.Event

    @Test func aRunPublishesCreateStartExitDelete() {
        var order = TaskEventOrder()
        var events = order.created()
        events += order.started("")
        events += order.exited("", status: 3)
        events += order.deleted()
        #expect(events == [.create, .start, .exit(execID: "", status: 3), .delete])
    }

    /// A process that dies before its Start was answered: its exit waits for its start event.
    @Test func anExitBeforeTheStartEventWaitsForIt() {
        var order = TaskEventOrder()
        _ = order.created()
        #expect(order.exited("", status: 0).isEmpty)
        #expect(order.started("") == [.start, .exit(execID: "", status: 0)])
        _ = order.execAdded("e1")
        #expect(order.exited("e1", status: 7).isEmpty)
        #expect(order.started("e1") == [.execStarted(execID: "e1"), .exit(execID: "e1", status: 7)])
    }

    /// The main process's exit goes after the exits of its running execs.
    @Test func theMainExitFollowsTheExecExits() {
        var order = TaskEventOrder()
        _ = order.created() + order.started("")
        _ = order.execAdded("a") + order.started("a") + order.execAdded("b") + order.started("b")
        #expect(order.exited("", status: 137, oom: true).isEmpty)
        #expect(order.holdsMainExit)
        #expect(order.exited("a", status: 137) == [.exit(execID: "a", status: 137)])
        #expect(order.exited("b", status: 137) == [.exit(execID: "b", status: 137), .oom, .exit(execID: "", status: 137)])
        #expect(!order.holdsMainExit)
    }

    @Test func anExecThatNeverRepeatsOrIsGivenUpOnReleasesTheMainExit() {
        var order = TaskEventOrder()
        _ = order.created() + order.started("") + order.execAdded("a") + order.started("a") + order.execAdded("never")
        #expect(order.exited("", status: 0).isEmpty)
        #expect(order.releaseHeldExit() == [.exit(execID: "", status: 0)])
        // An exec added but never started does not hold anything up.
        var second = TaskEventOrder()
        _ = second.created() + second.started("") + second.execAdded("x")
        #expect(second.exited("", status: 1) == [.exit(execID: "", status: 1)])
    }

    @Test func deleteGoesLastAndNothingFollowsIt() {
        var order = TaskEventOrder()
        _ = order.created() + order.started("") + order.execAdded("a") + order.started("a")
        _ = order.exited("", status: 0)
        #expect(order.deleted() == [.exit(execID: "", status: 0), .delete])
        #expect(order.exited("a", status: 9).isEmpty)
        #expect(order.started("z").isEmpty)
        #expect(order.deleted().isEmpty)
        // Never started: delete follows create directly.
        var unstarted = TaskEventOrder()
        #expect(unstarted.created() + unstarted.deleted() == [.create, .delete])
    }

    @Test func eachExitAndStartIsPublishedOnce() {
        var order = TaskEventOrder()
        _ = order.created()
        #expect(order.started("") == [.start])
        #expect(order.started("").isEmpty)
        #expect(order.exited("", status: 2) == [.exit(execID: "", status: 2)])
        #expect(order.exited("", status: 9).isEmpty)
    }
}
