import GuestMemory

/// One BIOS e820 memory map entry as the kernel reads it from `boot_params.e820_table`.
public struct E820Entry: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        case ram = 1
        case reserved = 2
        case acpi = 3
        case nvs = 4
    }

    public var address: GuestAddress
    public var size: UInt64
    public var kind: Kind

    public init(address: GuestAddress, size: UInt64, kind: Kind) {
        self.address = address
        self.size = size
        self.kind = kind
    }

    /// Encoded size in `boot_params`: u64 addr, u64 size, u32 type.
    static let encodedSize = 20

    var encoded: [UInt8] {
        var bytes: [UInt8] = []
        bytes.appendLittleEndian(address.rawValue)
        bytes.appendLittleEndian(size)
        bytes.appendLittleEndian(kind.rawValue)
        return bytes
    }

    /// The map for guest RAM laid out as `ramRegions`: conventional memory below the EBDA,
    /// the EBDA/BIOS/ACPI area reserved up to 1 MiB, then every RAM byte from 1 MiB up.
    /// A region that would end past 2^64 is left out (GuestMemory refuses such regions anyway).
    public static func memoryMap(ramRegions: [(base: GuestAddress, size: Int)]) -> [E820Entry] {
        var map: [E820Entry] = []
        let ebda = X86Layout.ebdaStart.rawValue, himem = X86Layout.himemStart.rawValue
        for region in ramRegions.sorted(by: { $0.base < $1.base }) {
            guard let size = UInt64(exactly: region.size), let end = region.base.checkedAdding(size)?.rawValue else { continue }
            let start = region.base.rawValue
            if start < ebda {
                map.append(E820Entry(address: region.base, size: min(end, ebda) - start, kind: .ram))
            }
            if start < himem && end > ebda {
                let reservedStart = max(start, ebda)
                map.append(E820Entry(address: GuestAddress(reservedStart), size: himem - reservedStart, kind: .reserved))
            }
            if end > himem {
                let ramStart = max(start, himem)
                map.append(E820Entry(address: GuestAddress(ramStart), size: end - ramStart, kind: .ram))
            }
        }
        return map
    }
}
