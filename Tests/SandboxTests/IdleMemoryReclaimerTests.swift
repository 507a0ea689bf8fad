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

    @Test func theBalloonTakesWhatIsAvailableLessTheReserve() {
        // 200 MiB available in a 256 MiB guest: 192 MiB into the balloon, 8 kept.
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 200 << 20, balloonMiB: 0) == 192)
        // Pages already in the balloon count as used: the target grows from them.
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 50 << 20, balloonMiB: 100) == 142)
    }

    @Test func nothingIsAskedOfAGuestShortOfMemoryAndNeverAllOfIt() {
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 6 << 20, balloonMiB: 0) == 0)
        // An answer claiming more than the guest has (the agent is not trusted) is capped.
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: .max, balloonMiB: 0) == 248)
        #expect(IdleMemoryReclaimer.balloonTarget(memoryMiB: 256, availableBytes: 1 << 40, balloonMiB: 200) == 248)
    }
}
