#if canImport(Glibc)
import Glibc
#endif
import Devices
import GuestMemory
import HostOS
import Synchronization

extension GuestAddress {
    /// The test drivers lay rings and buffers out at small fixed addresses, as a guest does: plain
    /// (trapping) arithmetic is what they want. The code under test uses the checked forms.
    static func + (address: GuestAddress, offset: UInt64) -> GuestAddress {
        GuestAddress(address.rawValue + offset)
    }
}

/// Counts edges, standing in for the VMM's irqfd (the devices are the code under test).
final class InterruptCounter: InterruptLine {
    private let count = Mutex(0)
    func trigger() { count.withLock { $0 += 1 } }
    var edges: Int { count.withLock { $0 } }
}

/// Collects what a device sends to its console.
final class OutputRecorder: Sendable {
    private let bytes = Mutex<[UInt8]>([])
    func append(_ more: [UInt8]) { bytes.withLock { $0 += more } }
    var recorded: [UInt8] { bytes.withLock { $0 } }
}

/// A real, already unlinked temporary file holding `contents`, as the VMM gets a cloned disk.
func makeDisk(_ contents: [UInt8]) throws -> FileDescriptor {
    var template = Array("/tmp/rund-devices-test-XXXXXX".utf8CString)
    let raw = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
    guard raw >= 0 else { throw SystemError.last("mkstemp") }
    template.withUnsafeBufferPointer { _ = unlink($0.baseAddress!) }
    let file = FileDescriptor(adopting: raw)
    try contents.withUnsafeBytes { _ = try file.pwrite($0, at: 0) }
    return file
}

/// The whole file as the host sees it.
func contents(of file: FileDescriptor) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: Int(try file.size()))
    _ = try bytes.withUnsafeMutableBytes { try file.pread(into: $0, at: 0) }
    return bytes
}

/// Eight sectors, each filled with its own number, so any misplaced sector shows.
func numberedSectors(_ count: Int = 8) -> [UInt8] {
    (0..<count).flatMap { [UInt8](repeating: UInt8($0), count: 512) }
}
