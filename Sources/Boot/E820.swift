/// One BIOS e820 memory map entry as the kernel reads it from `boot_params.e820_table`.
public struct E820Entry: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case ram = 1
        case reserved = 2
        case acpi = 3
        case nvs = 4
    }

    public var address: UInt64
    public var size: UInt64
    public var kind: Kind

    public init(address: UInt64, size: UInt64, kind: Kind) {
        self.address = address
        self.size = size
        self.kind = kind
    }

    /// Encoded size in `boot_params`: u64 addr, u64 size, u32 type.
    static let encodedSize = 20

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(address)
        bytes.appendLittleEndian(size)
        bytes.appendLittleEndian(kind.rawValue)
        return bytes
    }

    /// The map for guest RAM laid out as `ramRegions`: conventional memory below the EBDA,
    /// the EBDA/BIOS/ACPI area reserved up to 1 MiB, then every RAM byte from 1 MiB up.
    public static func memoryMap(ramRegions: [(base: UInt64, size: Int)]) -> [E820Entry] {
        var map: [E820Entry] = []
        for region in ramRegions.sorted(by: { $0.base < $1.base }) {
            let start = region.base
            let end = region.base + UInt64(region.size)
            if start < X86Layout.ebdaStart {
                map.append(E820Entry(address: start, size: min(end, X86Layout.ebdaStart) - start, kind: .ram))
            }
            if start < X86Layout.himemStart && end > X86Layout.ebdaStart {
                let reservedStart = max(start, X86Layout.ebdaStart)
                map.append(E820Entry(address: reservedStart, size: X86Layout.himemStart - reservedStart, kind: .reserved))
            }
            if end > X86Layout.himemStart {
                let ramStart = max(start, X86Layout.himemStart)
                map.append(E820Entry(address: ramStart, size: end - ramStart, kind: .ram))
            }
        }
        return map
    }
}
