import GuestMemory
import Testing
@testable import Boot

@Suite struct BzImageTests {
    @Test func parsesTheSetupHeader() throws {
        var kernel = SyntheticKernel()
        kernel.setupSects = 7
        let image = try BzImage(kernel.bytes)
        #expect(image.protocolVersion == 0x020f)
        #expect(image.setupSectors == 7)
        #expect(image.protectedModeOffset == 8 * 512)
        #expect(image.protectedModeKernel.count == kernel.protectedModeSize)
        #expect(image.protectedModeKernel.first == SyntheticKernel.pattern(0))
        #expect(image.initrdAddressMax == 0x7fff_ffff)
        #expect(image.kernelAlignment == 0x20_0000)
        #expect(image.isRelocatable)
        #expect(image.commandLineMax == 2047)
        #expect(image.preferredAddress == 0x100_0000)
        #expect(image.initSize == 0x80_0000)
        // Header copied from 0x1f1 up to 0x202 + jump displacement (0x6a).
        #expect(image.setupHeader.count == 0x26c - 0x1f1)
        #expect(image.requiredMemoryEnd == 0x100_0000 + 0x80_0000)
    }

    @Test func zeroSetupSectorsMeansFour() throws {
        var kernel = SyntheticKernel()
        kernel.setupSects = 0
        let image = try BzImage(kernel.bytes)
        #expect(image.setupSectors == 4)
        #expect(image.protectedModeOffset == 5 * 512)
    }

    @Test func rejectsWhatIsNotABootableBzImage() {
        var kernel = SyntheticKernel()
        kernel.bootFlag = 0
        #expect(throws: BootError.notBzImage(reason: "no boot flag 0xAA55 at offset 0x1fe")) { try BzImage(kernel.bytes) }

        kernel = SyntheticKernel()
        kernel.magic = Array("ELF!".utf8)
        #expect(throws: BootError.notBzImage(reason: "no \"HdrS\" signature at offset 0x202")) { try BzImage(kernel.bytes) }

        kernel = SyntheticKernel()
        kernel.version = 0x020b
        #expect(throws: BootError.unsupportedBootProtocol(version: 0x020b)) { try BzImage(kernel.bytes) }

        kernel = SyntheticKernel()
        kernel.xloadFlags = 0x0
        #expect(throws: BootError.kernelNot64Bit) { try BzImage(kernel.bytes) }

        kernel = SyntheticKernel()
        kernel.loadFlags = 0
        #expect(throws: BootError.self) { try BzImage(kernel.bytes) }
    }

    @Test func rejectsTruncatedAndEmptyFiles() {
        #expect(throws: BootError.kernelTruncated(size: 0, expected: 0x268)) { try BzImage([]) }
        #expect(throws: BootError.self) { try BzImage([UInt8](repeating: 0, count: 100)) }
        let whole = SyntheticKernel().bytes
        #expect(throws: BootError.self) { try BzImage(Array(whole.prefix(whole.count - 4096))) }
        #expect(throws: BootError.self) { try BzImage(Array(whole.prefix(0x300))) }
        // Random bytes of kernel size: a clear error, no crash.
        var garbage = [UInt8](repeating: 0, count: 1 << 20)
        for i in garbage.indices { garbage[i] = UInt8(truncatingIfNeeded: i &* 2654435761 >> 13) }
        #expect(throws: BootError.self) { try BzImage(garbage) }
    }

    @Test func errorsAreOneLineAndSayWhatToDo() {
        let errors: [BootError] = [
            .kernelTruncated(size: 10, expected: 616), .notBzImage(reason: "x"), .unsupportedBootProtocol(version: 0x0208),
            .kernelNot64Bit, .kernelDoesNotFit(neededBytes: 70 << 20, memoryBytes: 64 << 20),
            .initrdDoesNotFit(initrdBytes: 100 << 20, memoryBytes: 128 << 20),
            .commandLineTooLong(length: 3000, maximum: 2047), .commandLineContainsNUL,
            .memoryTooSmall(neededBytes: 2 << 20, memoryBytes: 1 << 20), .invalidVCPUCount(0, maximum: 254),
            .tooManyDevices(30, maximum: 19), .invalidDevice("d"), .acpiTablesTooLarge(size: 1, maximum: 0),
            .guestMemory(.outOfBounds(address: 0x1000, length: 8)),
        ]
        for error in errors {
            #expect(!error.description.contains("\n"))
            #expect(error.description.count > 20)
        }
        #expect(
            BootError.initrdDoesNotFit(initrdBytes: 100 << 20, memoryBytes: 128 << 20).description
                == "initrd of 100 MiB does not fit in 128 MiB of guest memory")
        #expect(BootError.unsupportedBootProtocol(version: 0x0208).description.hasPrefix("kernel boot protocol 2.8 "))
    }
}

/// Corrupted headers (random bytes over the setup header) never crash the loader: each either
/// loads or fails with a `BootError`.
@Suite struct CorruptKernelTests {
    /// SplitMix64: deterministic, so a failure reproduces.
    struct Generator: RandomNumberGenerator {
        var state: UInt64
        mutating func next() -> UInt64 {
            state &+= 0x9e37_79b9_7f4a_7c15
            var z = state
            z = (z ^ (z >> 30)) &* 0xbf58_476d_1ce4_e5b9
            z = (z ^ (z >> 27)) &* 0x94d0_49bb_1331_11eb
            return z ^ (z >> 31)
        }
    }

    @Test func randomHeaderCorruptionIsRejectedOrLoaded() throws {
        let regions = X86Layout.ramRegions(memoryBytes: 32 << 20)
        let memory = try GuestMemory.anonymous(regions)
        var kernel = SyntheticKernel()
        kernel.protectedModeSize = 4096
        let original = kernel.bytes
        var random = Generator(state: 0x5eed)
        var loaded = 0
        for _ in 0..<1500 {
            var bytes = original
            for _ in 0..<Int.random(in: 1...6, using: &random) {
                bytes[Int.random(in: 0x1f1..<0x270, using: &random)] = UInt8.random(in: 0...255, using: &random)
            }
            if Bool.random(using: &random) { bytes.removeLast(Int.random(in: 0..<bytes.count, using: &random)) }
            do {
                _ = try LinuxBoot.load(
                    kernel: bytes, initrd: [1, 2, 3], commandLine: "x", memory: memory,
                    ramRegions: regions, acpiRSDP: nil)
                loaded += 1
            } catch {
                #expect(!error.description.isEmpty)
            }
        }
        #expect(loaded > 0)
    }
}
