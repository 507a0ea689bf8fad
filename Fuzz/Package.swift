// swift-tools-version: 6.2
import PackageDescription

// libFuzzer targets for every parser of untrusted input (docs/fuzzing.md). A package of its own,
// on the main package's sources through its library products, so the main package's
// `swift build` never sees them; `scripts/fuzz` builds it optimised with -sanitize=fuzzer and
// -enable-testing (the targets reach internal parsers with `@testable import`) into .build-fuzz.
let rund = "rund"

func target(_ name: String, _ dependencies: [Target.Dependency]) -> Target {
    .executableTarget(
        name: name, dependencies: ["FuzzSupport"] + dependencies, path: "Targets/\(name)",
        swiftSettings: [.treatAllWarnings(as: .error)])
}

let package = Package(
    name: "rund-fuzz",
    dependencies: [
        .package(name: rund, path: ".."),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0", traits: []),
    ],
    targets: [
        .target(name: "FuzzDriver", path: "Support/FuzzDriver"),
        .target(
            name: "FuzzSupport", dependencies: ["FuzzDriver"], path: "Support/FuzzSupport",
            swiftSettings: [.treatAllWarnings(as: .error)]),
        .target(
            name: "DeviceFuzzing",
            dependencies: [
                .product(name: "Devices", package: rund), .product(name: "GuestMemory", package: rund),
                .product(name: "HostOS", package: rund), .product(name: "Logging", package: "swift-log"), "FuzzSupport",
            ], path: "Support/DeviceFuzzing", swiftSettings: [.treatAllWarnings(as: .error)]),

        target("TarReader", [.product(name: "Storage", package: rund)]),
        target("Gzip", [.product(name: "Storage", package: rund)]),
        target("OCIDocuments", [.product(name: "Storage", package: rund)]),
        target("RegistryResponses", [.product(name: "Storage", package: rund)]),
        target("PortIO", ["DeviceFuzzing", .product(name: "Devices", package: rund)]),
        target("BzImage", [.product(name: "Boot", package: rund), .product(name: "GuestMemory", package: rund)]),
        target("Virtqueue", ["DeviceFuzzing", .product(name: "Devices", package: rund), .product(name: "GuestMemory", package: rund)]),
        target("VirtioBlock", ["DeviceFuzzing", .product(name: "Devices", package: rund), .product(name: "HostOS", package: rund)]),
        target("VirtioPmem", ["DeviceFuzzing", .product(name: "Devices", package: rund), .product(name: "GuestMemory", package: rund)]),
        target("VirtioBalloon", ["DeviceFuzzing", .product(name: "Devices", package: rund)]),
        target(
            "VirtioNet",
            [
                "DeviceFuzzing", .product(name: "Devices", package: rund), .product(name: "GuestMemory", package: rund),
                .product(name: "HostOS", package: rund),
            ]),
        target("Vsock", ["DeviceFuzzing", .product(name: "Devices", package: rund), .product(name: "Logging", package: "swift-log")]),
        target(
            "TTRPCFrames",
            [
                .product(name: "TTRPC", package: rund), .product(name: "Logging", package: "swift-log"),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
        target(
            "AgentAnswers",
            [
                .product(name: "AgentProtocol", package: rund), .product(name: "Sandbox", package: rund),
                .product(name: "SwiftProtobuf", package: "swift-protobuf"),
            ]),
    ]
)
