import Foundation
import HostOS
import Testing
@testable import VMM

/// Compiles the freestanding C test guests in `Guests/` with the host's gcc into flat binaries
/// loaded at 1 MiB. Cached per scenario for the test process.
enum FreestandingGuest {
    static let sourceDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Guests")
    static let canBuild = HostTools.has("gcc") && HostTools.has("objcopy")

    static func build(_ source: String, defines: [String: String]) throws -> String {
        let directory = try TemporaryDirectory()
        let elf = directory.path + "/guest.elf", binary = directory.path + "/guest.bin"
        var argv = [
            "gcc", "-m64", "-ffreestanding", "-fno-pic", "-fno-pie", "-no-pie", "-nostdlib", "-static",
            "-fno-stack-protector", "-mno-red-zone", "-mgeneral-regs-only", "-O2",
            "-T", sourceDirectory.path + "/guest.ld", "-Wl,--build-id=none", "-o", elf,
            sourceDirectory.path + "/" + source,
        ]
        argv += defines.map { "-D\($0.key)=\($0.value)" }
        try Subprocess.checked(argv)
        try Subprocess.checked(["objcopy", "-O", "binary", elf, binary])
        directory.keep()
        return binary
    }
}

enum HostTools {
    static func has(_ tool: String) -> Bool {
        (try? Subprocess.run(["sh", "-c", "command -v \(tool)"]).status) == 0
    }
}

/// A temporary directory removed when the value goes away (unless `keep()` was called).
final class TemporaryDirectory {
    let path: String
    private var removeOnDeinit = true

    init() throws {
        path = try FileManager.default.url(
            for: .itemReplacementDirectory, in: .userDomainMask,
            appropriateFor: URL(fileURLWithPath: NSTemporaryDirectory()), create: true
        ).path
    }

    func keep() { removeOnDeinit = false }

    deinit {
        if removeOnDeinit { try? FileManager.default.removeItem(atPath: path) }
    }
}
