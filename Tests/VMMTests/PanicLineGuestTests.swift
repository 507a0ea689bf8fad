import Foundation
import Testing
@testable import VMM

/// A guest's panic line reaches the host's message (`rund: guest kernel panicked: ...`) escaped:
/// through the real VMM on the host's KVM, from the UART to `MachineExit`.
@Suite(.enabled(if: HostKVM.isUsable && FreestandingGuest.canBuild, "needs a usable /dev/kvm and gcc"))
struct PanicLineGuestTests {
    @Test func escapeSequencesInAPanicLineAreShownEscaped() throws {
        let binary = try FreestandingGuest.build("panic_line_guest.c", defines: [:])
        let machine = try Machine(
            configuration: VMConfiguration(
                kernelPath: binary, kernelFormat: .flatBinary(loadAddress: 0x10_0000), memoryMiB: 64, console: .none))
        let watchdog = Watchdog(seconds: 30) { machine.stop(signal: 9) }
        let exit = try machine.run()
        watchdog.cancel()
        #expect(exit == .guestPanicked("Kernel panic - not syncing: \\x1b]0;pwned\\x07\\x1b[2J\\x08\\x08\\u{202e}\\xff done"))
        #expect("\(exit)".unicodeScalars.allSatisfy { $0.value >= 0x20 && $0.value != 0x7f })
    }
}
