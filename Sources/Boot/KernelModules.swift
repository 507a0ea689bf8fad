/// A Linux kernel's loadable modules as its `modules.dep` describes them: which files to load,
/// and in what order, for a set of module names. The one place rund works this out (the guest
/// initramfs, and the rig and test scripts through `rund vm modules`).
public struct KernelModules: Sendable {
    /// Module path (relative to the modules directory) → the paths it depends on.
    private let dependencies: [String: [String]]
    /// Canonical name (`vmw_vsock_virtio_transport`) → module path.
    private let paths: [String: String]
    /// Canonical names of modules built into the kernel (nothing to load).
    private let builtin: Set<String>

    /// Parses `modules.dep` (and `modules.builtin`, when given) as depmod writes them.
    public init(dependencies: String, builtin: String? = nil) {
        var dependencyMap: [String: [String]] = [:]
        var paths: [String: String] = [:]
        for line in dependencies.split(separator: "\n") {
            guard let colon = line.firstIndex(of: ":") else { continue }
            let path = String(line[..<colon])
            dependencyMap[path] = line[line.index(after: colon)...].split(separator: " ").map(String.init)
            paths[Self.canonicalName(path)] = path
        }
        self.dependencies = dependencyMap
        self.paths = paths
        self.builtin = Set((builtin ?? "").split(separator: "\n").map { Self.canonicalName(String($0)) })
    }

    public enum Error: Swift.Error, Equatable, CustomStringConvertible, Sendable {
        case unknownModules([String])

        public var description: String {
            switch self {
            case .unknownModules(let names): "the kernel has no module named \(names.joined(separator: ", "))"
            }
        }
    }

    /// Module paths with every dependency before its user, each once; built-in modules are
    /// skipped. Names may use `-` or `_`.
    public func loadOrder(of names: [String]) throws(Error) -> [String] {
        var order: [String] = []
        var seen: Set<String> = []
        func visit(_ path: String) {
            guard seen.insert(path).inserted else { return }
            for dependency in dependencies[path] ?? [] { visit(dependency) }
            order.append(path)
        }
        var unknown: [String] = []
        for name in names {
            let canonical = Self.canonicalName(name)
            if let path = paths[canonical] {
                visit(path)
            } else if !builtin.contains(canonical) {
                unknown.append(name)
            }
        }
        guard unknown.isEmpty else { throw .unknownModules(unknown) }
        return order
    }

    /// `kernel/net/vmw_vsock/vmw_vsock_virtio_transport.ko.xz` → `vmw_vsock_virtio_transport`.
    static func canonicalName(_ pathOrName: String) -> String {
        let base = pathOrName.split(separator: "/").last.map(String.init) ?? pathOrName
        let stem = base.split(separator: ".", maxSplits: 1).first.map(String.init) ?? base
        return stem.replacing("-", with: "_")
    }
}
