@testable import Sandbox
import Testing

/// How much an idle sandbox's balloon asks of its guest (the rig's density checks show the
/// host getting it back).
struct IdleMemoryReclaimerTests {
    @Test func theGuestKeepsAThirtySecondOrEightMiB() {
        #expect(IdleMemoryReclaimer.reserveMiB(memoryMiB: 256) == 8)
        #expect(IdleMemoryReclaimer.reserveMiB(memoryMiB: 128) == 8)
        #expect(IdleMemoryReclaimer.reserveMiB(memoryMiB: 2048) == 64)
    }

    @Test func theBalloonTakesAllThatIsAvailableThenGivesTheReserveBack() {
        // 200 MiB available in a 256 MiB guest: all 200 MiB into the balloon, then 8 back.
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 200 << 20, balloonMiB: 0) == 200)
        #expect(IdleMemoryReclaimer.settledTarget(memoryMiB: 256, asked: 200, given: 200) == 192)
        // A guest that gave less: the reserve comes off what it gave.
        #expect(IdleMemoryReclaimer.settledTarget(memoryMiB: 256, asked: 200, given: 150) == 142)
        #expect(IdleMemoryReclaimer.settledTarget(memoryMiB: 256, asked: 200, given: 5) == 0)
        // A guest's count above what was asked (it is not trusted) does not raise the target.
        #expect(IdleMemoryReclaimer.settledTarget(memoryMiB: 256, asked: 100, given: 1000) == 92)
        // Pages already in the balloon count as used: the target grows from them.
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 50 << 20, balloonMiB: 100) == 150)
    }

    @Test func nothingIsAskedOfAGuestShortOfMemoryAndNeverAllOfIt() {
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 6 << 20, balloonMiB: 0) == 0)
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 8 << 20, balloonMiB: 30) == 30)
        // An answer claiming more than the guest has (the agent is not trusted) is capped.
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: .max, balloonMiB: 0) == 248)
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 1 << 40, balloonMiB: 200) == 248)
    }
}
