#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// The wall clock, read and set (CLOCK_REALTIME, nanoseconds since the epoch).
public enum RealtimeClock {
    public static func nanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
    }

    /// Steps the clock (needs CAP_SYS_TIME).
    public static func set(nanoseconds: Int64) throws {
        guard nanoseconds > 0 else { throw SystemError("clock_settime", errno: EINVAL, subject: "CLOCK_REALTIME") }
        var ts = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        guard clock_settime(CLOCK_REALTIME, &ts) == 0 else { throw SystemError.last("clock_settime", subject: "CLOCK_REALTIME") }
    }
}

/// The kernel's random number generator.
public enum KernelRandom {
    /// `count` bytes from /dev/urandom.
    public static func bytes(_ count: Int) throws -> [UInt8] {
        let device = try FileDescriptor.open("/dev/urandom", O_RDONLY | O_CLOEXEC)
        defer { device.close() }
        var bytes = [UInt8](repeating: 0, count: count)
        var filled = 0
        while filled < count {
            let got = try bytes.withUnsafeMutableBytes { try device.read(into: UnsafeMutableRawBufferPointer(rebasing: $0[filled...])) }
            guard got > 0 else { throw SystemError("read", errno: EIO, subject: "/dev/urandom") }
            filled += got
        }
        return bytes
    }

    /// Mixes `entropy` into the RNG, credited as full entropy (RNDADDENTROPY on `device`, an
    /// open /dev/urandom or /dev/random), then makes the RNG reseed from it now
    /// (RNDRESEEDCRNG), so what is read next no longer follows from the state before. Needs
    /// CAP_SYS_ADMIN.
    public static func mix(_ entropy: [UInt8], through device: FileDescriptor) throws {
        // struct rand_pool_info: int entropy_count (bits); int buf_size (bytes); __u32 buf[].
        guard !entropy.isEmpty else { return }
        let header = 2 * MemoryLayout<Int32>.size
        let raw = UnsafeMutableRawPointer.allocate(byteCount: header + entropy.count + 3, alignment: 4)
        defer { raw.deallocate() }
        raw.storeBytes(of: Int32(clamping: entropy.count * 8), as: Int32.self)
        raw.storeBytes(of: Int32(clamping: entropy.count), toByteOffset: 4, as: Int32.self)
        entropy.withUnsafeBytes { (raw + header).copyMemory(from: $0.baseAddress!, byteCount: entropy.count) }
        try device.ioctl("RNDADDENTROPY", rund_RNDADDENTROPY(), raw)
        try device.ioctl("RNDRESEEDCRNG", rund_RNDRESEEDCRNG(), nil)
    }
}
