extension AML {
    /// Resource descriptors for `_CRS` (ACPI 6.x section 6.4).
    public enum Resource: Equatable, Sendable {
        /// IO(Decode16 or Decode10, minimum, maximum, alignment, length).
        case io(minimum: UInt16, maximum: UInt16, alignment: UInt8, length: UInt8, decode16: Bool = true)
        /// Memory32Fixed(ReadWrite or ReadOnly, base, length).
        case memory32Fixed(base: UInt32, length: UInt32, writable: Bool = true)
        /// Interrupt(ResourceConsumer/Producer, Edge/Level, ActiveHigh/Low, Exclusive/Shared) { gsis }.
        case interrupt(gsis: [UInt32], consumer: Bool = true, edgeTriggered: Bool, activeLow: Bool, shared: Bool)

        static let ioTag: UInt8 = 0x47  // small item 0x08, length 7
        static let memory32FixedTag: UInt8 = 0x86
        static let extendedInterruptTag: UInt8 = 0x89
        static let endTag: UInt8 = 0x79  // small item 0x0f, length 1

        public var encoded: [UInt8] {
            var bytes: [UInt8] = []
            switch self {
            case let .io(minimum, maximum, alignment, length, decode16):
                bytes = [Resource.ioTag, decode16 ? 1 : 0]
                bytes.appendLittleEndian(minimum)
                bytes.appendLittleEndian(maximum)
                bytes += [alignment, length]
            case let .memory32Fixed(base, length, writable):
                bytes = [Resource.memory32FixedTag]
                bytes.appendLittleEndian(UInt16(9))
                bytes.append(writable ? 1 : 0)
                bytes.appendLittleEndian(base)
                bytes.appendLittleEndian(length)
            case let .interrupt(gsis, consumer, edgeTriggered, activeLow, shared):
                precondition((1...255).contains(gsis.count), "an Interrupt descriptor holds 1 to 255 interrupts")
                bytes = [Resource.extendedInterruptTag]
                bytes.appendLittleEndian(UInt16(2 + 4 * gsis.count))
                let flags = (consumer ? 0x01 : 0) | (edgeTriggered ? 0x02 : 0) | (activeLow ? 0x04 : 0) | (shared ? 0x08 : 0)
                bytes += [UInt8(flags), UInt8(gsis.count)]
                for gsi in gsis { bytes.appendLittleEndian(gsi) }
            }
            return bytes
        }
    }

    /// ResourceTemplate() { descriptors }: a Buffer ending in an EndTag. Its checksum byte is 0,
    /// which ACPI defines as "treat as valid"; iasl and ACPICA (Linux's interpreter, when it
    /// rebuilds a template) write 0 as well, so our bytes match theirs exactly.
    public static func resourceTemplate(_ resources: [Resource]) -> [UInt8] {
        buffer(resources.flatMap(\.encoded) + [Resource.endTag, 0])
    }
}
