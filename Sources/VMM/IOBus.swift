import Devices

/// Routes port I/O and MMIO exits to the device that owns the address. Built before vCPUs
/// start and never changed afterwards, so lookups need no lock.
final class IOBus: Sendable {
    struct PortRange: Sendable {
        let base: UInt16
        let count: UInt16
        let device: any PortIODevice
    }

    struct MMIORange: Sendable {
        let base: UInt64
        let size: UInt64
        let device: any MMIODevice
    }

    let ports: [PortRange]
    let mmio: [MMIORange]

    init(ports: [PortRange], mmio: [MMIORange]) {
        self.ports = ports
        self.mmio = mmio
    }

    /// Port reads nobody claims return all ones, as on real hardware with nothing decoding them.
    func portRead(_ port: UInt16, into data: UnsafeMutableRawBufferPointer) {
        if let range = ports.first(where: { port >= $0.base && port - $0.base < $0.count }) {
            range.device.read(port: port, into: data)
        } else {
            for i in 0..<data.count { data[i] = 0xff }
        }
    }

    func portWrite(_ port: UInt16, _ data: UnsafeRawBufferPointer) {
        ports.first(where: { port >= $0.base && port - $0.base < $0.count })?.device.write(port: port, data)
    }

    func mmioRead(_ address: UInt64, into data: UnsafeMutableRawBufferPointer) {
        if let range = mmio.first(where: { address >= $0.base && address - $0.base < $0.size }) {
            range.device.read(offset: address - range.base, into: data)
        } else {
            for i in 0..<data.count { data[i] = 0xff }
        }
    }

    func mmioWrite(_ address: UInt64, _ data: UnsafeRawBufferPointer) {
        if let range = mmio.first(where: { address >= $0.base && address - $0.base < $0.size }) {
            range.device.write(offset: address - range.base, data)
        }
    }
}
