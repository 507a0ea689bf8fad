#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Loop devices: a regular file presented as a block device (for mounting EROFS and XFS files).
public enum LoopDevice {
    /// Attaches `file` to a free loop device with autoclear: the device detaches by itself when
    /// the last user (a mount, or the returned descriptor) goes away. Returns the device path and
    /// its open descriptor; keep the descriptor until the device is mounted.
    public static func attach(file: String, readOnly: Bool) throws -> (path: String, device: FileDescriptor) {
        let backing = try FileDescriptor.open(file, readOnly ? O_RDONLY : O_RDWR)
        let control = try FileDescriptor.open("/dev/loop-control", O_RDWR)
        // Another process may take the same free device between GET_FREE and CONFIGURE: retry.
        for _ in 0..<16 {
            let number = try control.ioctl("ioctl(LOOP_CTL_GET_FREE)", rund_LOOP_CTL_GET_FREE(), value: 0)
            let path = "/dev/loop\(number)"
            let device = try FileDescriptor.open(path, readOnly ? O_RDONLY : O_RDWR)
            var config = loop_config()
            config.fd = UInt32(backing.rawValue)
            config.info.lo_flags = UInt32(LO_FLAGS_AUTOCLEAR) | (readOnly ? UInt32(LO_FLAGS_READ_ONLY) : 0)
            do {
                try device.ioctl("ioctl(LOOP_CONFIGURE)", rund_LOOP_CONFIGURE(), &config)
                return (path, device)
            } catch let error as SystemError where error.errno == EBUSY {
                continue
            }
        }
        throw SystemError("ioctl(LOOP_CONFIGURE)", errno: EBUSY, subject: file)
    }
}
