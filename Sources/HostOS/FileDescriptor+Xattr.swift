#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// Extended attributes of the open file (cgroup v2 marks pool entries with one, since cgroup2
/// directories cannot be renamed).
extension FileDescriptor {
    /// fsetxattr; with `createOnly` it fails with EEXIST when the attribute exists, which makes
    /// it an atomic claim.
    public func setExtendedAttribute(_ name: String, _ value: String, createOnly: Bool) throws {
        let bytes = Array(value.utf8)
        _ = try bytes.withUnsafeBytes { raw in
            try retryingInterrupts("setxattr", subject: name) {
                fsetxattr(rawValue, name, raw.baseAddress, raw.count, createOnly ? Int32(XATTR_CREATE) : 0)
            }
        }
    }

    /// fgetxattr; nil when the attribute is absent.
    public func extendedAttribute(_ name: String) throws -> String? {
        var buffer = [UInt8](repeating: 0, count: 1024)
        let count = buffer.withUnsafeMutableBytes { raw in fgetxattr(rawValue, name, raw.baseAddress, raw.count) }
        if count < 0 {
            if errno == ENODATA { return nil }
            throw SystemError.last("getxattr", subject: name)
        }
        return String(decoding: buffer[0..<count], as: UTF8.self)
    }

    /// fremovexattr; an absent attribute is not an error.
    public func removeExtendedAttribute(_ name: String) throws {
        if fremovexattr(rawValue, name) != 0 && errno != ENODATA {
            throw SystemError.last("removexattr", subject: name)
        }
    }
}
