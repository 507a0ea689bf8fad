import ArgumentParser
import Testing

@testable import rund

/// `rund run --reclaim-idle` and `rund bench density --reclaim-idle` before any VM starts.
struct ReclaimIdleOptionTests {
    @Test func secondsBecomeTheSpecsDuration() throws {
        let command = try RunCommand.parse(["--image", "i", "--reclaim-idle", "2.5", "--", "true"])
        #expect(command.reclaimIdle == 2.5)
    }

    @Test(arguments: ["0", "0.5", "86401"])
    func outOfRangeIsRefused(value: String) {
        #expect { try RunCommand.parse(["--image", "i", "--reclaim-idle", value, "--", "true"]) } throws: { error in
            RunCommand.message(for: error).contains("--reclaim-idle must be 1 to 86400 seconds")
        }
    }

    @Test func aNamedTemplateIsRefused() {
        #expect { try RunCommand.parse(["--image", "i", "--template", "t", "--reclaim-idle", "5", "--", "true"]) } throws: {
            error in
            RunCommand.message(for: error).contains("drop --template or --reclaim-idle")
        }
    }

    @Test func theDensityBenchNeedsABalloon() {
        for arguments in [["--without-balloon"], ["--starts", "pmem,clone"]] {
            #expect {
                try BenchDensity.parse(["--image", "i", "--counts", "10", "--reclaim-idle", "5"] + arguments)
            } throws: { error in
                BenchDensity.message(for: error).contains("--reclaim-idle needs a balloon")
            }
        }
    }
}
