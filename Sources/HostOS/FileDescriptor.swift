#if canImport(Glibc)
import Glibc
#endif
import CLinux

/// An owned file descriptor, closed exactly once: by `close()` or when the last reference goes.
public final class FileDescriptor: @unchecked Sendable {
    // `rawValue` is immutable after init except through close(), which callers serialise.
    public private(set) var rawValue: Int32

    public init(adopting rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit {
        if rawValue >= 0 { Glibc.close(rawValue) }
    }

    public var isOpen: Bool { rawValue >= 0 }

    public func close() {
        if rawValue >= 0 {
            Glibc.close(rawValue)
            rawValue = -1
        }
    }

    /// Gives up ownership: the descriptor stays open (for code outside Swift that keeps using
    /// it, such as a signal handler) and is returned.
    @discardableResult
    public func relinquish() -> Int32 {
        defer { rawValue = -1 }
        return rawValue
    }

    /// open(2) with O_CLOEXEC always added: rund never leaks descriptors into children by accident.
    public static func open(_ path: String, _ flags: Int32, mode: mode_t = 0o644) throws -> FileDescriptor {
        let fd = try retryingInterrupts("open", subject: path) {
            rund_open(path, flags | O_CLOEXEC, UInt32(mode))
        }
        return FileDescriptor(adopting: fd)
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        try retryingInterrupts("read") { Glibc.read(rawValue, buffer.baseAddress, buffer.count) }
    }

    public func pread(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        try retryingInterrupts("pread") { Glibc.pread(rawValue, buffer.baseAddress, buffer.count, Int(offset)) }
    }

    public func pwrite(_ buffer: UnsafeRawBufferPointer, at offset: Int64) throws -> Int {
        try retryingInterrupts("pwrite") { Glibc.pwrite(rawValue, buffer.baseAddress, buffer.count, Int(offset)) }
    }

    /// Writes the whole buffer, looping over short writes.
    public func writeAll(_ buffer: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < buffer.count {
            let n = try retryingInterrupts("write") {
                Glibc.write(rawValue, buffer.baseAddress! + done, buffer.count - done)
            }
            done += n
        }
    }

    public func writeAll(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { raw in try writeAll(raw) }
    }

    public func writeAll(_ string: String) throws {
        try writeAll(Array(string.utf8))
    }

    /// Reads until end of file, or until at least `limit` bytes are in (callers check the count).
    public func readToEnd(limit: Int = 64 << 20) throws -> [UInt8] {
        var result: [UInt8] = []
        // A file that says its size is read straight into one buffer of it (a byte more sees the
        // end): no regrowing, no chunk copies, which a kernel image of many MiB would pay for.
        if let size = try? size(), size > 0, let expected = Int(exactly: size), limit > 0 {
            let capacity = expected < limit ? expected + 1 : limit
            result = try [UInt8](unsafeUninitializedCapacity: capacity) { buffer, count in
                count = 0
                while count < capacity {
                    let n = try read(into: UnsafeMutableRawBufferPointer(UnsafeMutableBufferPointer(rebasing: buffer[count...])))
                    if n == 0 { return }
                    count += n
                }
            }
            if result.count < capacity { return result }
        }
        var chunk = [UInt8](repeating: 0, count: 65536)
        while result.count < limit {
            let n = try chunk.withUnsafeMutableBytes { raw in try read(into: raw) }
            if n == 0 { break }
            result.append(contentsOf: chunk[0..<n])
        }
        return result
    }

    public func size() throws -> Int64 {
        var st = stat()
        _ = try retryingInterrupts("fstat") { fstat(rawValue, &st) }
        return Int64(st.st_size)
    }

    public func fsync() throws {
        _ = try retryingInterrupts("fsync") { Glibc.fsync(rawValue) }
    }

    /// ioctl with a pointer argument.
    @discardableResult
    public func ioctl(_ name: String, _ request: UInt, _ argument: UnsafeMutableRawPointer?) throws -> Int32 {
        try retryingInterrupts(name) { rund_ioctl_ptr(rawValue, request, argument) }
    }

    /// ioctl with an integer argument.
    @discardableResult
    public func ioctl(_ name: String, _ request: UInt, value: UInt) throws -> Int32 {
        try retryingInterrupts(name) { rund_ioctl_int(rawValue, request, value) }
    }
}
