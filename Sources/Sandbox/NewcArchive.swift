/// A minimal writer for the "newc" cpio format the kernel unpacks as an initramfs: every entry
/// is a 110-byte ASCII header, its NUL-terminated name, then its data, each padded to 4 bytes.
package struct NewcArchive {
    package private(set) var bytes: [UInt8] = []
    private var nextInode: UInt32 = 1

    package init() {}

    package mutating func addDirectory(_ path: String) {
        append(path, mode: 0o040755, data: [])
    }

    package mutating func addFile(_ path: String, data: [UInt8], executable: Bool = false) {
        append(path, mode: executable ? 0o100755 : 0o100644, data: data)
    }

    /// Ends the archive with the trailer entry the format requires.
    package mutating func finish() {
        append("TRAILER!!!", mode: 0, data: [], inode: 0)
    }

    private mutating func append(_ path: String, mode: UInt32, data: [UInt8], inode: UInt32? = nil) {
        let name = Array(path.utf8) + [0]
        let number = inode ?? nextInode
        if inode == nil { nextInode += 1 }
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check: all but the magic are 8 hex digits.
        let fields: [UInt32] = [
            number, mode, 0, 0, mode & 0o040000 != 0 ? 2 : 1, 0, UInt32(data.count),
            0, 0, 0, 0, UInt32(name.count), 0,
        ]
        bytes += Array("070701".utf8)
        for field in fields { bytes += Array(Self.hex(field).utf8) }
        bytes += name
        pad()
        bytes += data
        pad()
    }

    private mutating func pad() {
        while bytes.count % 4 != 0 { bytes.append(0) }
    }

    private static func hex(_ value: UInt32) -> String {
        let digits = String(value, radix: 16, uppercase: true)
        return String(repeating: "0", count: 8 - digits.count) + digits
    }
}
