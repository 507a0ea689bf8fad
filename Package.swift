// swift-tools-version: 6.2
import PackageDescription

// One responsibility per target; see docs/architecture.md for the module map.
let strict: [SwiftSetting] = [.treatAllWarnings(as: .error)]

let package = Package(
    name: "rund",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "rund", targets: ["rund"]),
        // The modules whose parsers the fuzz targets drive; Fuzz/ is a package of its own that
        // depends on this one (docs/fuzzing.md). Nothing else uses these products.
        .library(name: "Boot", targets: ["Boot"]),
        .library(name: "Devices", targets: ["Devices"]),
        .library(name: "GuestMemory", targets: ["GuestMemory"]),
        .library(name: "HostOS", targets: ["HostOS"]),
        .library(name: "Storage", targets: ["Storage"]),
        .library(name: "TTRPC", targets: ["TTRPC"]),
        .library(name: "AgentProtocol", targets: ["AgentProtocol"]),
        .library(name: "Sandbox", targets: ["Sandbox"]),
        .executable(name: "containerd-shim-rund-v2", targets: ["containerd-shim-rund-v2"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // No default traits: BinaryDelimitedStreams imports all of Foundation, which the static
        // rund-agent must not link (FoundationEssentials is enough for bytes fields).
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
    ],
    targets: [
        .target(name: "CLinux"),
        .target(name: "HostOS", dependencies: ["CLinux"], swiftSettings: strict),
        // Guest-controlled text and guest-triggered log lines, made safe for the host's operator.
        .target(name: "Untrusted", dependencies: [.product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // The binary encoding of saved machine state (snapshots, templates): bounds-checked, versioned.
        .target(name: "StateCoding", swiftSettings: strict),
        .target(name: "KVM", dependencies: ["CLinux", "HostOS", "StateCoding"], swiftSettings: strict),
        // Single atomic loads and stores for guest memory the guest changes concurrently (virtqueues).
        .target(name: "CGuestMemory"),
        .target(name: "GuestMemory", dependencies: ["CGuestMemory", "CLinux", "HostOS"], swiftSettings: strict),
        .target(name: "Boot", dependencies: ["GuestMemory", "HostOS"], swiftSettings: strict),
        .target(
            name: "Devices",
            dependencies: ["GuestMemory", "HostOS", "StateCoding", "Untrusted", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(
            name: "VMM",
            dependencies: [
                "KVM", "Boot", "Devices", "GuestMemory", "HostOS", "Untrusted", .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        .target(name: "CZlib", linkerSettings: [.linkedLibrary("z")]),
        .target(
            name: "Storage", dependencies: ["CLinux", "CZlib", "HostOS", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(name: "Cgroups", dependencies: ["HostOS", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        // A sandbox's network on the host: namespace, veth, tap, tc redirects, NAT, address leases.
        .target(name: "Network", dependencies: ["HostOS", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .target(
            name: "TTRPC",
            dependencies: [
                "HostOS", "Untrusted", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
                .product(name: "Logging", package: "swift-log"),
            ], exclude: ["Generated/ttrpc.proto.sha256"], swiftSettings: strict),
        .target(
            name: "AgentProtocol", dependencies: ["TTRPC", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            exclude: ["Generated/agent.proto.sha256"], swiftSettings: strict),
        // The guest agent (issue 6): its logic in AgentCore, PID 1 in rund-agent, linked fully static.
        .target(
            name: "AgentCore",
            dependencies: ["AgentProtocol", "TTRPC", "HostOS", "CLinux", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .target(name: "AgentEarlyInit"),
        .executableTarget(
            name: "rund-agent",
            dependencies: [
                "AgentEarlyInit", "AgentCore", "AgentProtocol", "TTRPC", "HostOS", .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict,
            // FoundationEssentials does not autolink its own static dependencies; name them.
            linkerSettings: [
                .unsafeFlags(["-static-executable"]), .linkedLibrary("_FoundationCollections"), .linkedLibrary("_FoundationCShims"),
            ]),
        // One sandbox's lifecycle for `rund run` (issue 6).
        .target(
            name: "Sandbox",
            dependencies: [
                "AgentProtocol", "Boot", "TTRPC", "CLinux", "Cgroups", "Devices", "HostOS", "Network", "Storage", "Untrusted", "VMM",
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        // Benchmarks (`rund bench ...`): the measuring, peers and reports; the CLI only parses and prints.
        .target(
            name: "Bench", dependencies: ["Boot", "Cgroups", "HostOS", "KVM", "Network", "Sandbox", "Storage", "VMM"],
            swiftSettings: strict),
        // containerd's runtime v2 shim (issue 13): the Task service, events, stdio and bundle in
        // Shim; the binary is its thin entry point. The VMM runs inside the shim's process.
        .target(
            name: "Shim",
            dependencies: [
                "Sandbox", "Storage", "Cgroups", "Network", "TTRPC", "AgentProtocol", "KVM", "VMM", "HostOS", "CLinux",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"), .product(name: "Logging", package: "swift-log"),
            ],
            exclude: [
                "Generated/containerd_task_v2_shim.proto.sha256", "Generated/containerd_types_mount.proto.sha256",
                "Generated/containerd_types_task_task.proto.sha256", "Generated/containerd_events_task.proto.sha256",
                "Generated/containerd_services_ttrpc_events_v1_events.proto.sha256",
                "Generated/containerd_runtimeoptions_v1_api.proto.sha256", "Generated/containerd_cgroups_v1_metrics.proto.sha256",
                "Generated/containerd_cgroups_v2_metrics.proto.sha256",
            ],
            swiftSettings: strict),
        .executableTarget(name: "containerd-shim-rund-v2", dependencies: ["Shim"], swiftSettings: strict),
        .executableTarget(
            name: "rund",
            dependencies: [
                "Bench", "Boot", "HostOS", "KVM", "VMM", "Storage", "Cgroups", "Network", "Sandbox",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
                .product(name: "Logging", package: "swift-log"),
            ],
            swiftSettings: strict),

        .testTarget(name: "HostOSTests", dependencies: ["HostOS", "CLinux"], swiftSettings: strict),
        .testTarget(name: "StateCodingTests", dependencies: ["StateCoding"], swiftSettings: strict),
        .testTarget(
            name: "UntrustedTests", dependencies: ["Untrusted", .product(name: "Logging", package: "swift-log")], swiftSettings: strict),
        .testTarget(name: "KVMTests", dependencies: ["KVM", "CLinux", "HostOS", "GuestMemory"], swiftSettings: strict),
        .testTarget(name: "GuestMemoryTests", dependencies: ["GuestMemory", "HostOS"], swiftSettings: strict),
        .testTarget(
            name: "VMMTests",
            dependencies: ["VMM", "KVM", "GuestMemory", "HostOS", "Sandbox", "Cgroups", .product(name: "Logging", package: "swift-log")],
            exclude: ["Guests"], swiftSettings: strict),
        .testTarget(name: "BootTests", dependencies: ["Boot", "GuestMemory", "HostOS"], swiftSettings: strict),
        .testTarget(
            name: "DevicesTests", dependencies: ["Devices", "GuestMemory", "HostOS", .product(name: "Logging", package: "swift-log")],
            swiftSettings: strict),
        .testTarget(name: "StorageTests", dependencies: ["Storage", "HostOS"], swiftSettings: strict),
        .testTarget(name: "CgroupsTests", dependencies: ["Cgroups", "HostOS", "CLinux"], swiftSettings: strict),
        .testTarget(name: "NetworkTests", dependencies: ["Network", "HostOS"], swiftSettings: strict),
        .testTarget(
            name: "TTRPCTests", dependencies: ["TTRPC", "HostOS", .product(name: "SwiftProtobuf", package: "swift-protobuf")],
            swiftSettings: strict),
        .testTarget(name: "AgentProtocolTests", dependencies: ["AgentProtocol", "TTRPC", "HostOS"], swiftSettings: strict),
        .testTarget(name: "IntegrationTests", dependencies: ["HostOS"], exclude: ["Guests"], swiftSettings: strict),
        .testTarget(
            name: "SandboxTests",
            dependencies: [
                "Sandbox", "Storage", "HostOS", "AgentProtocol", "AgentCore", "TTRPC", "Cgroups", "VMM",
                .product(name: "Logging", package: "swift-log"),
            ], swiftSettings: strict),
        .testTarget(
            name: "RundTests",
            dependencies: [
                "rund", "Bench", "Cgroups", "GuestMemory", "HostOS", "Network", "Sandbox", "Storage",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict),
        .testTarget(
            name: "ShimTests",
            dependencies: [
                "Shim", "Sandbox", "AgentProtocol", "HostOS", "TTRPC",
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ], swiftSettings: strict),
        .testTarget(
            name: "AgentCoreTests", dependencies: ["AgentCore", "AgentProtocol", "TTRPC", "HostOS", "VMM", "Devices"], swiftSettings: strict
        ),
    ]
)
