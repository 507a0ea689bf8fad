/// One member of a tar archive, after pax and GNU long-name headers have been folded in.
struct TarEntry: Sendable {
    enum Kind: Sendable, Equatable {
        case regular, hardLink, symbolicLink, characterDevice, blockDevice, directory, fifo
    }

    var path: String
    var kind: Kind
    var size: Int64
    var mode: UInt32
    var uid: UInt32
    var gid: UInt32
    var modificationTime: Int
    var linkTarget: String
    var deviceMajor: UInt32
    var deviceMinor: UInt32
    var extendedAttributes: [(name: String, value: [UInt8])]
}
