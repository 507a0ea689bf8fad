import Foundation
import HostOS
@testable import Sandbox
import Storage
import Testing

struct GuestInitramfsTests {
    /// The archive is what the real cpio tool reads back: names, modes and contents.
    @Test(.enabled(if: access("/usr/bin/cpio", X_OK) == 0, "needs cpio (apt-get install cpio)"))
    func cpioReadsTheArchiveBack() throws {
        var archive = NewcArchive()
        archive.addDirectory("etc")
        archive.addFile("etc/hello", data: Array("hello\n".utf8))
        archive.addFile("init", data: Array("#!/bin/sh\n".utf8), executable: true)
        archive.finish()
        #expect(archive.bytes.count % 4 == 0)
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("newc-\(getpid())").path
        try FileSystem.makeDirectories(directory)
        defer { try? FileSystem.removeTree(directory) }
        try FileSystem.open(at: nil, directory + "/a.cpio", O_WRONLY | O_CREAT, mode: 0o644).writeAll(archive.bytes)
        let listing = try Subprocess.checked(["sh", "-c", "cd \(directory) && cpio -idv < a.cpio 2>&1 && cat etc/hello && stat -c %a init"])
        #expect(listing.stdoutText.contains("etc/hello\nhello\n755\n") || listing.stdoutText.hasSuffix("hello\n755\n"))
    }

    @Test func userAndEnvironmentParsing() throws {
        #expect(try SandboxSpec.parseUser("1000").uid == 1000)
        #expect(try SandboxSpec.parseUser("1000:50").gid == 50)
        #expect(throws: SandboxError.self) { try SandboxSpec.parseUser("root") }
        let config = try JSONDecoder().decode(
            OCI.ImageConfiguration.Config.self,
            from: Data(
                #"{"Entrypoint":["/bin/tool"],"Cmd":["--help"],"Env":["PATH=/bin","A=1"]}"#.utf8))
        let empty = try JSONDecoder().decode(OCI.ImageConfiguration.Config.self, from: Data("{}".utf8))
        let spec = SandboxSpec(id: "s", image: "i", command: ["run"], environment: ["A=2"], user: (7, 8))
        let process = try spec.process(config: config)
        #expect(process.args == ["/bin/tool", "run"])
        #expect(process.env == ["PATH=/bin", "A=2"])
        #expect(process.cwd == "/" && process.uid == 7 && process.gid == 8)
        #expect(throws: SandboxError.self) { try SandboxSpec(id: "s", image: "i").process(config: empty) }
    }

    /// pmem needs FS_DAX built in and the two modules: a kernel directory without either says
    /// which is missing; the cached Debian kernel (when scripts/setup made it) has both.
    @Test func pmemSupportIsReadFromTheKernelsConfigAndModules() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("kernel-\(getpid())").path
        try FileSystem.makeDirectories(directory + "/modules")
        defer { try? FileSystem.removeTree(directory) }
        func write(_ name: String, _ text: String) throws {
            try FileSystem.open(at: nil, directory + "/" + name, O_WRONLY | O_CREAT | O_TRUNC, mode: 0o644).writeAll(Array(text.utf8))
        }
        try write("config", "CONFIG_EROFS_FS=m\n# CONFIG_FS_DAX is not set\n")
        try write("modules/modules.dep", "kernel/drivers/nvdimm/virtio_pmem.ko:\nkernel/drivers/nvdimm/nd_pmem.ko:\n")
        #expect(GuestInitramfs.pmemUnsupportedReason(kernelDirectory: directory) == "the guest kernel is built without CONFIG_FS_DAX")
        try write("config", "CONFIG_FS_DAX=y\n")
        #expect(GuestInitramfs.pmemUnsupportedReason(kernelDirectory: directory) == nil)
        try write("modules/modules.dep", "kernel/drivers/nvdimm/virtio_pmem.ko:\n")
        #expect(GuestInitramfs.pmemUnsupportedReason(kernelDirectory: directory)?.contains("nd_pmem") == true)
    }
}
