import GuestMemory
import HostOS

extension VirtioBlock {
    /// Request types and status codes (spec 5.2.6).
    enum RequestType {
        static let read: UInt32 = 0
        static let write: UInt32 = 1
        static let flush: UInt32 = 4
        static let getID: UInt32 = 8
    }

    enum RequestStatus {
        static let ok: UInt8 = 0
        static let ioError: UInt8 = 1
        static let unsupported: UInt8 = 2
    }

    static let headerLength = 16

    /// Serves one request; returns the bytes written into the device-writable buffers.
    /// The status byte is the last writable byte and is written last.
    func handle(_ chain: DescriptorChain) throws(VirtqueueError) -> UInt32 {
        guard chain.writableLength >= 1 else {
            throw .malformedRequest("block request at \(chain.head) has no device-writable status byte")
        }
        let (status, dataWritten) = serve(chain)
        chain.writeBytes([status], at: chain.writableLength - 1)
        return UInt32(dataWritten + 1)
    }

    /// Returns the status and the count of data bytes written to the guest.
    private func serve(_ chain: DescriptorChain) -> (UInt8, Int) {
        guard chain.readableLength >= Self.headerLength else {
            logger.debug("virtio-blk: request without a 16-byte header")
            return (RequestStatus.ioError, 0)
        }
        let header = chain.readBytes(from: 0, count: Self.headerLength)
        let type = header.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: 0, as: UInt32.self)) }
        let sector = header.withUnsafeBytes { UInt64(littleEndian: $0.loadUnaligned(fromByteOffset: 8, as: UInt64.self)) }
        let dataIn = chain.writableLength - 1
        let dataOut = chain.readableLength - Self.headerLength
        let medium = currentMedium
        let capacity = medium?.capacity ?? 0
        switch type {
        case RequestType.read:
            guard let medium, let offset = byteOffset(sector: sector, length: dataIn, capacity: capacity) else {
                return (RequestStatus.ioError, 0)
            }
            return readFile(medium.file, into: chain.writableSegments(from: 0, count: dataIn), of: chain.memory, at: offset)
        case RequestType.write:
            guard !readOnly else { return (RequestStatus.ioError, 0) }
            guard let medium, let offset = byteOffset(sector: sector, length: dataOut, capacity: capacity) else {
                return (RequestStatus.ioError, 0)
            }
            return (
                writeFile(medium.file, chain.readableSegments(from: Self.headerLength, count: dataOut), of: chain.memory, at: offset), 0
            )
        case RequestType.flush:
            guard let medium else { return (RequestStatus.ioError, 0) }
            do {
                try medium.file.fsync()
                return (RequestStatus.ok, 0)
            } catch {
                logger.error("virtio-blk: flush failed: \(error)")
                return (RequestStatus.ioError, 0)
            }
        case RequestType.getID:
            // NUL-padded to 20 bytes; a shorter buffer gets what fits.
            let padded = identifier + [UInt8](repeating: 0, count: Self.identifierLength - identifier.count)
            let written = chain.writeBytes(Array(padded.prefix(dataIn)), at: 0)
            return (RequestStatus.ok, written)
        default:
            return (RequestStatus.unsupported, 0)
        }
    }

    /// The file offset for `length` bytes at `sector`, or nil when the range is not whole sectors
    /// inside the disk.
    private func byteOffset(sector: UInt64, length: Int, capacity: UInt64) -> Int64? {
        guard length % Self.sectorSize == 0 else {
            logger.debug("virtio-blk: data length \(length) is not a multiple of \(Self.sectorSize)")
            return nil
        }
        let sectors = UInt64(length / Self.sectorSize)
        guard sector <= capacity, sectors <= capacity - sector else {
            logger.debug("virtio-blk: sectors \(sector)+\(sectors) beyond capacity \(capacity)")
            return nil
        }
        return Int64(sector) * Int64(Self.sectorSize)
    }

    /// preads straight into the guest's buffers (through `GuestMemory`, which checks each range).
    private func readFile(
        _ file: FileDescriptor, into segments: [DescriptorChain.Segment], of memory: GuestMemory, at start: Int64
    ) -> (UInt8, Int) {
        var offset = start
        var written = 0
        for segment in segments {
            var done = 0
            while done < segment.length {
                do {
                    let rest = segment.dropFirst(done)
                    let count = try memory.copy(fromFile: file, at: offset, to: rest.address, count: rest.length)
                    // End of file inside the capacity: the file shrank under us.
                    guard count > 0 else { return (RequestStatus.ioError, written) }
                    done += count
                    offset += Int64(count)
                    written += count
                } catch {
                    logger.error("virtio-blk: read at \(offset) failed: \(error)")
                    return (RequestStatus.ioError, written)
                }
            }
        }
        return (RequestStatus.ok, written)
    }

    private func writeFile(_ file: FileDescriptor, _ segments: [DescriptorChain.Segment], of memory: GuestMemory, at start: Int64) -> UInt8
    {
        var offset = start
        for segment in segments {
            var done = 0
            while done < segment.length {
                do {
                    let rest = segment.dropFirst(done)
                    let count = try memory.copy(from: rest.address, count: rest.length, toFile: file, at: offset)
                    guard count > 0 else { return RequestStatus.ioError }
                    done += count
                    offset += Int64(count)
                } catch {
                    logger.error("virtio-blk: write at \(offset) failed: \(error)")
                    return RequestStatus.ioError
                }
            }
        }
        return RequestStatus.ok
    }
}
