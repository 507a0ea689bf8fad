import GuestMemory
import HostOS

/// An uncompressed x86-64 kernel (`vmlinux`, ELF64) entered at its 64-bit entry point: no
/// decompressor runs in the guest. Each PT_LOAD segment goes to its physical address; the
/// entry (`phys_startup_64`) takes the zero page in RSI like a bzImage's 64-bit entry. Linux
/// randomises its own base only in the decompressor, so such a kernel runs at its link address.
public struct ElfKernel: Sendable {
    public struct Segment: Sendable, Equatable {
        public let physicalAddress: GuestAddress
        /// Where the segment's bytes are in the file.
        public let fileRange: Range<Int>
        /// Bytes in memory; past the file's bytes they are zero (.bss).
        public let memorySize: UInt64
    }

    public let entry: GuestAddress
    public let segments: [Segment]
    private let bytes: [UInt8]

    /// Whether `bytes` start as an ELF file does (then they are parsed as one, never as a bzImage).
    public static func hasMagic(_ bytes: [UInt8]) -> Bool {
        bytes.count >= 4 && bytes[0] == 0x7f && bytes[1] == 0x45 && bytes[2] == 0x4c && bytes[3] == 0x46
    }

    enum Header {
        static let size = 64
        static let elfClass = 4, dataEncoding = 5, type = 16, machine = 18, entry = 24
        static let programHeaderOffset = 32, programHeaderEntrySize = 54, programHeaderCount = 56
    }
    enum ProgramHeader {
        static let size = 56
        static let type = 0, offset = 8, physicalAddress = 24, fileSize = 32, memorySize = 40
        static let load: UInt32 = 1
    }
    /// A kernel has a handful of segments; more is not a kernel.
    static let maximumSegments = 64

    public init(_ bytes: [UInt8]) throws(BootError) {
        guard bytes.count >= Header.size else { throw .kernelTruncated(size: bytes.count, expected: Header.size) }
        guard Self.hasMagic(bytes) else { throw .invalidELFKernel(reason: "no ELF magic") }
        guard bytes[Header.elfClass] == 2, bytes[Header.dataEncoding] == 1 else {
            throw .invalidELFKernel(reason: "not a little-endian 64-bit ELF file")
        }
        guard bytes.littleEndian(UInt16.self, at: Header.type) == 2 else {
            throw .invalidELFKernel(reason: "not an executable (ET_EXEC)")
        }
        guard bytes.littleEndian(UInt16.self, at: Header.machine) == 62 else { throw .kernelNot64Bit }
        guard bytes.littleEndian(UInt16.self, at: Header.programHeaderEntrySize) == UInt16(ProgramHeader.size) else {
            throw .invalidELFKernel(reason: "program headers are not 56 bytes each")
        }
        let count = Int(bytes.littleEndian(UInt16.self, at: Header.programHeaderCount))
        guard (1...Self.maximumSegments).contains(count) else {
            throw .invalidELFKernel(reason: "\(count) program headers (1 to \(Self.maximumSegments) expected)")
        }
        let tableOffset = bytes.littleEndian(UInt64.self, at: Header.programHeaderOffset)
        // At most 64 headers of 56 bytes: the table's end cannot overflow once its start fits.
        guard tableOffset <= UInt64(bytes.count), UInt64(bytes.count) - tableOffset >= UInt64(count * ProgramHeader.size) else {
            throw .kernelTruncated(size: bytes.count, expected: Int(clamping: tableOffset) &+ count * ProgramHeader.size)
        }

        var segments: [Segment] = []
        for index in 0..<count {
            let at = Int(tableOffset) + index * ProgramHeader.size
            guard bytes.littleEndian(UInt32.self, at: at + ProgramHeader.type) == ProgramHeader.load else { continue }
            let offset = bytes.littleEndian(UInt64.self, at: at + ProgramHeader.offset)
            let fileSize = bytes.littleEndian(UInt64.self, at: at + ProgramHeader.fileSize)
            let memorySize = bytes.littleEndian(UInt64.self, at: at + ProgramHeader.memorySize)
            let address = bytes.littleEndian(UInt64.self, at: at + ProgramHeader.physicalAddress)
            let (fileEnd, fileOverflow) = offset.addingReportingOverflow(fileSize)
            guard !fileOverflow, fileEnd <= UInt64(bytes.count) else {
                throw .kernelTruncated(size: bytes.count, expected: Int(clamping: fileOverflow ? UInt64.max : fileEnd))
            }
            guard fileSize <= memorySize else {
                throw .invalidELFKernel(reason: "segment \(index) holds more file bytes than memory")
            }
            // Below 1 MiB are the zero page, command line, page tables and ACPI tables.
            guard address >= X86Layout.himemStart.rawValue else {
                throw .invalidELFKernel(reason: "segment \(index) at 0x\(String(address, radix: 16)) is not above 1 MiB")
            }
            guard !address.addingReportingOverflow(memorySize).overflow else {
                throw .invalidELFKernel(reason: "segment \(index) ends past the 64-bit address space")
            }
            segments.append(
                Segment(physicalAddress: GuestAddress(address), fileRange: Int(offset)..<Int(fileEnd), memorySize: memorySize))
        }
        guard !segments.isEmpty else { throw .invalidELFKernel(reason: "no loadable segment") }
        segments.sort { $0.physicalAddress.rawValue < $1.physicalAddress.rawValue }
        for (lower, upper) in zip(segments, segments.dropFirst())
        where lower.physicalAddress.rawValue + lower.memorySize > upper.physicalAddress.rawValue {
            throw .invalidELFKernel(
                reason:
                    "segments at 0x\(String(lower.physicalAddress.rawValue, radix: 16)) and 0x\(String(upper.physicalAddress.rawValue, radix: 16)) overlap"
            )
        }
        let entry = bytes.littleEndian(UInt64.self, at: Header.entry)
        guard
            segments.contains(where: {
                entry >= $0.physicalAddress.rawValue && entry - $0.physicalAddress.rawValue < UInt64($0.fileRange.count)
            })
        else {
            throw .invalidELFKernel(reason: "entry point 0x\(String(entry, radix: 16)) is outside the loaded code")
        }
        self.entry = GuestAddress(entry)
        self.segments = segments
        self.bytes = bytes
    }

    /// Lowest address past every segment (overflow was ruled out when parsing).
    public var requiredMemoryEnd: UInt64 {
        segments.map { $0.physicalAddress.rawValue + $0.memorySize }.max() ?? 0
    }

    /// Writes every segment, its .bss zeroed, into guest memory. With `file` (the file these
    /// bytes were read from), each segment's whole pages are mapped from it copy-on-write
    /// instead (`GuestMemory.mapCopyOnWrite`) when its file offset and address agree within a
    /// page, as a linker lays a kernel out: the pages a guest never writes (its text, read-only
    /// data, unwind tables) are then held once on the host for every guest of this kernel.
    func write(into memory: GuestMemory, sharingPagesOf file: FileDescriptor?) throws(GuestMemoryError) {
        for segment in segments {
            if let file, let shared = segment.wholePages {
                let start = segment.fileRange.lowerBound
                let head = start..<(start + shared.offsetInSegment)
                let tail = (head.upperBound + shared.length)..<segment.fileRange.upperBound
                try LinuxBoot.write(bytes[head], at: segment.physicalAddress, into: memory)
                let pages = head.upperBound..<tail.lowerBound
                let address = try segment.physicalAddress.adding(UInt64(head.count))
                do {
                    try memory.mapCopyOnWrite(of: file, at: Int64(pages.lowerBound), to: address, length: pages.count)
                } catch .fileMapping {
                    // A file system that cannot map files: the pages are copied like the rest.
                    try LinuxBoot.write(bytes[pages], at: address, into: memory)
                }
                try LinuxBoot.write(bytes[tail], at: segment.physicalAddress.adding(UInt64(tail.lowerBound - start)), into: memory)
            } else {
                try LinuxBoot.write(bytes[segment.fileRange], at: segment.physicalAddress, into: memory)
            }
            let fileEnd = try segment.physicalAddress.adding(UInt64(segment.fileRange.count))
            let zeroed = segment.memorySize - UInt64(segment.fileRange.count)
            guard let length = Int(exactly: zeroed) else { throw .addressOverflow(fileEnd, offset: zeroed) }
            if length > 0 { try memory.zero(at: fileEnd, length: length) }
        }
    }
}

extension ElfKernel.Segment {
    static let pageSize = 4096

    /// The segment's file bytes that fill whole pages, as an offset from its start and a length,
    /// when its file offset and address agree within a page (else a page of the file never
    /// lines up with a page of memory); nil when there is no whole page.
    var wholePages: (offsetInSegment: Int, length: Int)? {
        let page = Self.pageSize
        let address = physicalAddress.rawValue
        guard UInt64(fileRange.lowerBound % page) == address % UInt64(page) else { return nil }
        let head = (page - fileRange.lowerBound % page) % page
        guard fileRange.count > head else { return nil }
        let length = (fileRange.count - head) / page * page
        return length > 0 ? (head, length) : nil
    }
}
