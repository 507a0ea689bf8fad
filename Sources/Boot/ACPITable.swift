/// The 36-byte header every ACPI system description table starts with, and the shared pieces
/// (OEM ids, checksums, Generic Address Structures).
enum ACPITable {
    static let headerSize = 36
    static let oemID = "RUND  "
    static let creatorID = "RUND"
    static let oemRevision: UInt32 = 1
    static let creatorRevision: UInt32 = 1
    /// Offset of the checksum byte inside the header.
    static let checksumOffset = 9

    /// A complete table: header (signature, length, revision, checksum, ids) followed by `body`.
    static func make(signature: String, revision: UInt8, oemTableID: String, body: [UInt8]) -> [UInt8] {
        var table: [UInt8] = []
        table.appendFixedASCII(signature, width: 4)
        table.appendLittleEndian(UInt32(headerSize + body.count))
        table.append(revision)
        table.append(0)  // checksum, filled below
        table.appendFixedASCII(oemID, width: 6)
        table.appendFixedASCII(oemTableID, width: 8)
        table.appendLittleEndian(oemRevision)
        table.appendFixedASCII(creatorID, width: 4)
        table.appendLittleEndian(creatorRevision)
        table += body
        table[checksumOffset] = checksumByte(table)
        return table
    }

    /// Generic Address Structure for an 8-bit I/O port register.
    static func ioPortRegister(_ port: UInt16) -> [UInt8] {
        let systemIO: UInt8 = 1, bitWidth: UInt8 = 8, bitOffset: UInt8 = 0, byteAccess: UInt8 = 1
        var gas: [UInt8] = [systemIO, bitWidth, bitOffset, byteAccess]
        gas.appendLittleEndian(UInt64(port))
        return gas
    }
}
