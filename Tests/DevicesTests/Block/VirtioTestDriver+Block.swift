import Devices
import GuestMemory

/// virtio-blk requests as Linux's virtio_blk lays them out: header, data, status byte.
extension VirtioTestDriver {
    static let requestHeader: GuestAddress = 0x10000
    static let writeData: GuestAddress = 0x20000
    static let statusByte: GuestAddress = 0x30000
    static let readData: GuestAddress = 0x40000

    static let typeRead: UInt32 = 0, typeWrite: UInt32 = 1, typeFlush: UInt32 = 4, typeGetID: UInt32 = 8
    static let statusOK: UInt8 = 0, statusIOError: UInt8 = 1, statusUnsupported: UInt8 = 2

    struct BlockCompletion {
        let head: UInt32
        let status: UInt8
        let usedLength: UInt32
        let data: [UInt8]
    }

    func writeRequestHeader(type: UInt32, sector: UInt64) throws {
        try memory.store(type, at: Self.requestHeader)
        try memory.store(UInt32(0), at: Self.requestHeader + 4)
        try memory.store(sector, at: Self.requestHeader + 8)
        try memory.store(UInt8(0xff), at: Self.statusByte)
    }

    /// Submits one request and returns its completion, or nil when the device used nothing.
    func blockRequest(type: UInt32, sector: UInt64 = 0, writing data: [UInt8] = [], reading count: Int = 0) throws -> BlockCompletion? {
        try writeRequestHeader(type: type, sector: sector)
        var buffers = [Buffer(address: Self.requestHeader, length: 16, writable: false)]
        if !data.isEmpty {
            try memory.write(data, at: Self.writeData)
            buffers.append(Buffer(address: Self.writeData, length: UInt32(data.count), writable: false))
        }
        if count > 0 {
            try memory.zero(at: Self.readData, length: count)
            buffers.append(Buffer(address: Self.readData, length: UInt32(count), writable: true))
        }
        buffers.append(Buffer(address: Self.statusByte, length: 1, writable: true))
        return try submit(buffers, reading: count)
    }

    /// Publishes a chain, notifies, and reads back the completion if there is one.
    func submit(_ buffers: [Buffer], reading count: Int = 0) throws -> BlockCompletion? {
        let before = usedIndex
        try publish(try addChain(buffers))
        notify()
        guard usedIndex == before &+ 1 else { return nil }
        let used = try usedElement(before)
        return BlockCompletion(
            head: used.id, status: try memory.load(UInt8.self, at: Self.statusByte), usedLength: used.length,
            data: try memory.readBytes(at: Self.readData, count: count))
    }
}
