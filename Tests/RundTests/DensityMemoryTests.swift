#if canImport(Glibc)
import Glibc
#endif
import GuestMemory
import HostOS
import Testing
@testable import Bench

/// `rund bench density` splits a sandbox's memory into guest RAM and the rest from the rund
/// process's smaps. Guest RAM whose kernel pages are mapped from `vmlinux` is several mappings
/// (anonymous, the file, anonymous again): all of them are the guest's. Checked on this test
/// process's own smaps, with real guest memory.
struct DensityMemoryTests {
    static let mebibyte = 1 << 20

    @Test func guestRAMSplitByTheKernelFileIsCountedWhole() throws {
        let directory = "/tmp/rund-density-test-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileSystem.makeDirectory(at: nil, directory, mode: 0o700)
        defer { try? FileSystem.removeTree(directory) }
        let kernel = try FileDescriptor.open(directory + "/vmlinux", O_RDWR | O_CREAT | O_EXCL, mode: 0o600)
        try [UInt8](repeating: 0x90, count: 4 * Self.mebibyte).withUnsafeBytes { _ = try kernel.pwrite($0, at: 0) }

        let memory = try GuestMemory.anonymous([(base: 0, size: 64 * Self.mebibyte)])
        try memory.mapCopyOnWrite(of: kernel, at: 0, to: GuestAddress(UInt64(16 * Self.mebibyte)), length: 4 * Self.mebibyte)
        // Below the kernel 8 MiB written, the kernel's 4 MiB read (1 of them written), above it 2 MiB written.
        try memory.write([UInt8](repeating: 1, count: 8 * Self.mebibyte), at: 0)
        try memory.write([UInt8](repeating: 2, count: Self.mebibyte), at: GuestAddress(UInt64(17 * Self.mebibyte)))
        try memory.write([UInt8](repeating: 3, count: 2 * Self.mebibyte), at: GuestAddress(UInt64(40 * Self.mebibyte)))
        // Read last: a copy-on-write fault may split a huge mapping of the file and drop its other pages.
        let kernelPages = try memory.readBytes(at: GuestAddress(UInt64(16 * Self.mebibyte)), count: 4 * Self.mebibyte)
        #expect(kernelPages[0..<Self.mebibyte].allSatisfy { $0 == 0x90 })
        #expect(kernelPages[Self.mebibyte..<(2 * Self.mebibyte)].allSatisfy { $0 == 2 })
        #expect(kernelPages[(2 * Self.mebibyte)...].allSatisfy { $0 == 0x90 })

        let measured = try ProcessMemory(pid: getpid(), guestMappingKiB: 64 * 1024)
        // 8 + 4 + 2 MiB, all private: nobody else maps these file pages.
        #expect((14 * 1024..<15 * 1024).contains(measured.guestPrivateKiB), "\(measured.guestPrivateKiB) KiB")
        #expect(measured.guestPssKiB >= 14 * 1024)
        // Written: 8 + 1 + 2 MiB (the kernel's written MiB is an anonymous copy of the file's).
        #expect((11 * 1024..<12 * 1024).contains(measured.guestAnonymousKiB), "\(measured.guestAnonymousKiB) KiB")
        withExtendedLifetime(memory) {}
    }
}
