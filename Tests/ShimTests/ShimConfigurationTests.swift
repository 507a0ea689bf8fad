@testable import Shim
import SwiftProtobuf
import Testing

/// The runtime options: what containerd passes on start's stdin and in Create, and rund's file.
struct ShimConfigurationTests {
    @Test func ctrsRuntimeConfigPathIsRead() throws {
        // shimv2.md 1.3: the 52 bytes ctr --runtime-config-path /etc/rund/config.toml sends.
        var options = Google_Protobuf_Any()
        options.typeURL = "runtimeoptions.v1.Options"
        options.value = try Runtimeoptions_V1_Options.with { $0.configPath = "/etc/rund/config.toml" }.serializedData()
        #expect(try ShimConfiguration.configPath(options: options) == "/etc/rund/config.toml")
        #expect(try ShimConfiguration.configPath(options: nil) == nil)
        var runc = Google_Protobuf_Any()
        runc.typeURL = "containerd.runc.v1.Options"
        runc.value = try Google_Protobuf_Empty().serializedData()
        #expect { try ShimConfiguration.configPath(options: runc) } throws: { "\($0)".contains("not rund's") }
    }

    @Test func theFileSetsWhatItNames() throws {
        var configuration = ShimConfiguration(root: "/var/lib/rund", agent: "/usr/local/bin/rund-agent")
        try configuration.apply(
            text: """
                # rund's shim
                root = "/srv/rund"   # state root
                agent = "/opt/rund-agent"
                memory_mib = 512
                vcpus = 2
                writable_mib = 1024
                console_dir = "/var/log/rund#1"
                stall_timeout = 30
                allow_unconfined = true
                """, file: "t.toml")
        #expect(configuration.root == "/srv/rund" && configuration.agent == "/opt/rund-agent")
        #expect(configuration.memoryMiB == 512 && configuration.vcpus == 2 && configuration.writableMiB == 1024)
        #expect(configuration.consoleDirectory == "/var/log/rund#1" && configuration.stallTimeoutSeconds == 30)
        #expect(configuration.allowUnconfined)
    }

    @Test func mistakesNameTheLine() {
        var configuration = ShimConfiguration(root: "/r", agent: "/a")
        #expect(throws: ShimError(.invalidArgument, "t.toml:2: unknown key memory")) {
            try configuration.apply(text: "vcpus = 1\nmemory = 5", file: "t.toml")
        }
        #expect(throws: ShimError(.invalidArgument, "t.toml:1: vcpus must be an integer in 1...32")) {
            try configuration.apply(text: "vcpus = 64", file: "t.toml")
        }
        #expect(throws: ShimError(.invalidArgument, "t.toml:1: root must be a string in double quotes")) {
            try configuration.apply(text: "root = /srv", file: "t.toml")
        }
    }
}
