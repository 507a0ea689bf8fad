import HostOS
import Testing

/// The committed Swift code for protos/*.proto must match the protos: scripts/generate-protos
/// records the SHA-256 of each .proto and of its generated file in
/// Sources/<Target>/Generated/<name>.proto.sha256. Editing a proto (or the generated code)
/// without regenerating fails here; no protoc-gen-swift is needed to check.
@Suite struct GeneratedCodeDriftTests {
    static let root: String = {
        var parts = #filePath.split(separator: "/", omittingEmptySubsequences: false)
        parts.removeLast(3)  // Tests/AgentProtocolTests/<file>
        return parts.joined(separator: "/")
    }()

    static func sha256(_ path: String) throws -> String {
        let result = try Subprocess.checked(["sha256sum", path])
        return String(result.stdoutText.prefix { $0 != " " })
    }

    static func read(_ path: String) throws -> String {
        String(decoding: try FileDescriptor.open(path, 0).readToEnd(), as: UTF8.self)
    }

    /// protos/<path>.proto and the target holding its code, named by its path with `_` for `/`.
    static let protos: [(String, String)] =
        [("ttrpc", "TTRPC"), ("agent", "AgentProtocol")]
        + [
            "containerd/task/v2/shim", "containerd/types/mount", "containerd/types/task/task", "containerd/events/task",
            "containerd/services/ttrpc/events/v1/events", "containerd/runtimeoptions/v1/api",
            "containerd/cgroups/v1/metrics", "containerd/cgroups/v2/metrics",
        ].map { ($0, "Shim") }

    @Test(arguments: protos)
    func generatedCodeMatchesItsProto(proto: String, target: String) throws {
        let name = proto.replacing("/", with: "_")
        let protoPath = "\(Self.root)/protos/\(proto).proto"
        let generated = "\(Self.root)/Sources/\(target)/Generated/\(name).pb.swift"
        let recorded = try Self.read("\(Self.root)/Sources/\(target)/Generated/\(name).proto.sha256")
        let fields = Dictionary(
            uniqueKeysWithValues: recorded.split(separator: "\n").map { line in
                let pair = line.split(separator: " ", maxSplits: 1)
                return (String(pair[0]), pair.count > 1 ? String(pair[1]) : "")
            })
        let advice = "run scripts/generate-protos and commit the result"
        #expect(fields["proto-sha256"] == (try Self.sha256(protoPath)), "protos/\(proto).proto changed: \(advice)")
        #expect(fields["swift-sha256"] == (try Self.sha256(generated)), "\(proto).pb.swift was edited by hand: \(advice)")

        // The generator must be the swift-protobuf version Package.swift pins.
        let manifest = try Self.read("\(Self.root)/Package.swift")
        let pin = manifest.split(separator: "\n").first { $0.contains("apple/swift-protobuf") }
        let version = pin?.split(separator: "\"").dropLast().last.map(String.init)
        #expect(version != nil)
        #expect(fields["generator"] == "protoc-gen-swift \(version ?? "?")", "generator differs from the pinned swift-protobuf: \(advice)")
    }
}
