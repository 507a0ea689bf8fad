@testable import Shim
import Testing

/// The command lines containerd 1.6 gives a shim (docs/shim.md), parsed as Go's flag package does.
struct ShimArgumentsTests {
    @Test func startAsContainerdRunsIt() throws {
        let parsed = try ShimArguments.parse([
            "-namespace", "default", "-address", "/run/ctrtest/c.sock",
            "-publish-binary", "/usr/bin/containerd", "-id", "t1", "-debug", "start",
        ])
        #expect(parsed.action == .start)
        #expect(parsed.namespace == "default" && parsed.address == "/run/ctrtest/c.sock" && parsed.id == "t1")
        #expect(parsed.publishBinary == "/usr/bin/containerd" && parsed.debug)
    }

    @Test func deleteCarriesTheBundle() throws {
        let parsed = try ShimArguments.parse([
            "-namespace", "default", "-address", "/run/c.sock", "-publish-binary", "/usr/bin/containerd",
            "-id", "t1", "-bundle", "/run/state/io.containerd.runtime.v2.task/default/t1", "delete",
        ])
        #expect(parsed.action == .delete)
        #expect(parsed.bundle == "/run/state/io.containerd.runtime.v2.task/default/t1")
        #expect(!parsed.debug)
    }

    @Test func goFlagSpellingsAndUnknownFlagsAreAccepted() throws {
        let parsed = try ShimArguments.parse([
            "--namespace=k8s.io", "-id=a", "--address", "/a.sock", "-newflag", "-other=1", "-debug=false",
        ])
        #expect(parsed.action == .serve)
        #expect(parsed.namespace == "k8s.io" && parsed.id == "a" && parsed.address == "/a.sock" && !parsed.debug)
    }

    @Test func badCommandLinesAreOneLineErrors() {
        #expect(throws: ShimError(.invalidArgument, "flag -id needs a value")) { try ShimArguments.parse(["-id"]) }
        #expect(throws: ShimError(.invalidArgument, "unknown action \"stop\": use start or delete")) { try ShimArguments.parse(["stop"]) }
    }

    @Test func theServerGetsWhatTheGoShimsPass() throws {
        var arguments = try ShimArguments.parse([
            "-namespace", "ns", "-address", "/c.sock", "-publish-binary", "/bin/ctrd", "-id", "x", "start",
        ])
        #expect(arguments.serveArguments == ["-namespace", "ns", "-id", "x", "-address", "/c.sock", "-publish-binary", "/bin/ctrd"])
        arguments.debug = true
        #expect(try ShimArguments.parse(arguments.serveArguments).action == .serve)
    }
}
