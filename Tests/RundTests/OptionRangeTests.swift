import ArgumentParser
import Testing
@testable import rund

/// Durations given on the command line are checked before use: none of them can trap when it
/// becomes nanoseconds (inf, nan, 1e300), and each error names the option.
struct OptionRangeTests {
    @Test(arguments: ["nan", "inf", "1e300", "1"])
    func stallTimeoutOfVMBoot(value: String) {
        #expect { try VMBoot.parse(["--kernel", "k", "--stall-timeout", value]) } throws: { error in
            VMBoot.message(for: error).contains("--stall-timeout must be 2 to 86400 seconds")
        }
    }

    @Test(arguments: ["nan", "inf", "0", "0.01"])
    func timeoutsOfBenchBootAndImagePull(value: String) {
        #expect { try BenchBoot.parse(["--kernel", "k", "--initrd", "i", "--timeout", value]) } throws: { error in
            BenchBoot.message(for: error).contains("--timeout must be 0.1 to 86400 seconds")
        }
        #expect { try ImageCommand.Pull.parse(["busybox:1", "--timeout", value]) } throws: { error in
            ImageCommand.Pull.message(for: error).contains("--timeout must be 0.1 to 86400 seconds")
        }
    }

    @Test func sensibleValuesPass() throws {
        _ = try VMBoot.parse(["--kernel", "k", "--stall-timeout", "60"])
        _ = try BenchBoot.parse(["--kernel", "k", "--initrd", "i", "--timeout", "30"])
        _ = try ImageCommand.Pull.parse(["busybox:1", "--timeout", "10"])
    }
}
