@testable import Shim
import Testing

/// containerd's rootfs mounts (shimv2.md 3.6) and what the sandbox's root is made of.
struct RootfsSourceTests {
    static func mount(_ type: String, _ source: String, _ options: [String]) -> Containerd_Types_Mount {
        .with {
            $0.type = type
            $0.source = source
            $0.options = options
        }
    }

    @Test func anOverlaySnapshotIsItsLowerChain() throws {
        let overlay = Self.mount("overlay", "overlay", ["index=off", "workdir=/s/2/work", "upperdir=/s/2/fs", "lowerdir=/s/3/fs:/s/1/fs"])
        #expect(try RootfsSource.parse([overlay], bundle: "/b") == .layers(["/s/3/fs", "/s/1/fs"]))
    }

    @Test func bindsAndNoMountsAreDirectories() throws {
        #expect(try RootfsSource.parse([], bundle: "/b") == .directory("/b/rootfs"))
        #expect(
            try RootfsSource.parse([Self.mount("bind", "/n/snapshots/2", ["rbind", "rw"])], bundle: "/b") == .directory("/n/snapshots/2"))
        #expect(
            try RootfsSource.parse([Self.mount("bind", "/n/snapshots/1", ["rbind", "ro"])], bundle: "/b") == .layers(["/n/snapshots/1"]))
    }

    @Test func otherMountsAreRefused() {
        #expect(throws: ShimError.self) { try RootfsSource.parse([Self.mount("ext4", "/dev/mapper/x", [])], bundle: "/b") }
        #expect(throws: ShimError.self) { try RootfsSource.parse([Self.mount("overlay", "overlay", ["upperdir=/u"])], bundle: "/b") }
        #expect(throws: ShimError.self) { try RootfsSource.parse([Self.mount("overlay", "overlay", ["lowerdir=/a::/b"])], bundle: "/b") }
        #expect(throws: ShimError.self) {
            try RootfsSource.parse([Self.mount("bind", "/a", ["ro"]), Self.mount("bind", "/b", ["ro"])], bundle: "/b")
        }
    }
}
