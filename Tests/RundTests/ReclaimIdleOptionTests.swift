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

    /// A template's VM has a balloon, so its clones give idle memory back too.
    @Test func aNamedTemplateTakesIt() throws {
        let command = try RunCommand.parse(["--image", "i", "--template", "t", "--reclaim-idle", "5", "--", "true"])
        #expect(command.reclaimIdle == 5)
        #expect(
            try BenchDensity.parse(["--image", "i", "--counts", "10", "--starts", "pmem,clone", "--reclaim-idle", "5"]).reclaimIdle == 5)
    }

    /// The page cache by default, the balloon when asked; the method alone means nothing.
    @Test func theMethodDefaultsToTheCacheAndNeedsTheDelay() throws {
        #expect(try RunCommand.parse(["--image", "i", "--reclaim-idle", "5", "--", "true"]).reclaimIdleBy == nil)
        let balloon = try RunCommand.parse(["--image", "i", "--reclaim-idle", "5", "--reclaim-idle-by", "balloon", "--", "true"])
        #expect(balloon.reclaimIdleBy == .balloon)
        #expect(
            try BenchDensity.parse(["--image", "i", "--counts", "10", "--reclaim-idle", "5", "--reclaim-idle-by", "cache"])
                .reclaimIdleBy == .cache)
        #expect { try RunCommand.parse(["--image", "i", "--reclaim-idle-by", "cache", "--", "true"]) } throws: { error in
            RunCommand.message(for: error).contains("--reclaim-idle-by goes with --reclaim-idle SECONDS")
        }
        #expect { try BenchDensity.parse(["--image", "i", "--counts", "10", "--reclaim-idle-by", "balloon"]) } throws: { error in
            BenchDensity.message(for: error).contains("--reclaim-idle-by goes with --reclaim-idle SECONDS")
        }
        #expect { try RunCommand.parse(["--image", "i", "--reclaim-idle", "5", "--reclaim-idle-by", "swap", "--", "true"]) } throws: {
            error in RunCommand.message(for: error).contains("swap")
        }
    }

    /// Small guest pages are asked for, never the default (the host's huge pages boot faster).
    @Test func smallGuestPagesAreAFlag() throws {
        #expect(try RunCommand.parse(["--image", "i", "--", "true"]).smallGuestPages == false)
        #expect(try RunCommand.parse(["--image", "i", "--small-guest-pages", "--", "true"]).smallGuestPages)
        #expect(try BenchDensity.parse(["--image", "i", "--counts", "10", "--small-guest-pages"]).smallGuestPages)
    }

    @Test func theDensityBenchNeedsABalloon() {
        let cases = [
            (["--reclaim-idle", "5", "--without-balloon"], "--reclaim-idle needs a balloon"),
            (["--starts", "pmem,clone", "--without-balloon"], "a template's clones have its balloon"),
        ]
        for (arguments, message) in cases {
            #expect {
                try BenchDensity.parse(["--image", "i", "--counts", "10"] + arguments)
            } throws: { error in
                BenchDensity.message(for: error).contains(message)
            }
        }
    }
}
