#if canImport(Glibc)
import Glibc
#endif
import Cgroups
import HostOS
import Synchronization

/// The real cgroupfs the tests run against, and a parent name of their own per test.
enum CgroupTestHost {
    static let detected: CgroupHost? = try? CgroupHost.detect()

    /// Tests that change cgroupfs need root and a writable hierarchy with a memory controller.
    static var usable: Bool {
        guard geteuid() == 0, let detected, detected.writable else { return false }
        return detected.controllers.contains("memory")
    }

    static let reason = "needs root and writable cgroupfs with the memory controller"

    static var host: CgroupHost { detected! }

    private static let counter = Atomic<Int>(0)

    /// `rund-test-<pid>-<n>`: distinct per test run and per test.
    static func uniqueParent() -> String {
        "rund-test-\(getpid())-\(counter.add(1, ordering: .relaxed).newValue)"
    }

    /// Runs body with a fresh parent name and removes everything under it afterwards, even when
    /// the body fails.
    static func withParent<T>(_ body: (String) throws -> T) throws -> T {
        let parent = uniqueParent()
        defer { try? CgroupPool.removeAll(host: host, parentName: parent) }
        return try body(parent)
    }

    static func read(_ path: String) throws -> String {
        try FileDescriptor.open(path, O_RDONLY).readValue().trimmingCharacters()
    }

    static func entries(of parent: String, in hierarchy: CgroupHierarchy) throws -> [String] {
        try FileDescriptor.openDirectory("\(hierarchy.mountPoint)/\(parent)").directoryEntries()
            .filter { $0.hasPrefix("pool-") || $0.hasPrefix("sb-") }.sorted()
    }

    /// A child blocked in `sleep` until killed.
    static func sleeper() throws -> SpawnedProcess {
        try SpawnedProcess.spawn(["sleep", "600"])
    }
}

extension String {
    func trimmingCharacters() -> String {
        String(self.drop(while: \.isWhitespace).reversed().drop(while: \.isWhitespace).reversed())
    }
}
