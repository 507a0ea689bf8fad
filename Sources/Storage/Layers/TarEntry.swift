/// One member of a tar archive, after pax and GNU long-name headers have been folded in.
/// Names are raw bytes, exactly as the archive has them: nothing is decoded, repaired or
/// normalised between the header and the syscall (see `ArchivePath`).
struct TarEntry: Sendable {
    enum Kind: Sendable, Equatable {
        case regular, hardLink, symbolicLink, characterDevice, blockDevice, directory, fifo
    }

    var path: [UInt8]
    var kind: Kind
    var size: Int64
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    var modificationTime: Int
    var linkTarget: [UInt8]
    var deviceMajor: UInt32
    var deviceMinor: UInt32
    var extendedAttributes: [(name: [UInt8], value: [UInt8])]

    /// The name for messages: one line, non-printable bytes escaped.
    var printablePath: String { ArchivePath.printable(path) }
}
