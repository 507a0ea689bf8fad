import Devices
import GuestMemory

/// Routes port I/O and MMIO exits to the device that owns the address. Built before vCPUs
/// start and never changed afterwards, so lookups need no lock.
final class IOBus: Sendable {
    struct PortRange: Sendable {
        let base: UInt16
        let count: UInt16
        let device: any PortIODevice
    }

    struct MMIORange: Sendable {
        let base: GuestAddress
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

    func mmioRead(_ address: GuestAddress, into data: UnsafeMutableRawBufferPointer) {
        if let (device, offset) = mmioDevice(at: address) {
            device.read(offset: offset, into: data)
        } else {
            for i in 0..<data.count { data[i] = 0xff }
        }
    }

    func mmioWrite(_ address: GuestAddress, _ data: UnsafeRawBufferPointer) {
        if let (device, offset) = mmioDevice(at: address) {
            device.write(offset: offset, data)
        }
    }

    /// The device whose window holds `address`, and the offset into that window.
    private func mmioDevice(at address: GuestAddress) -> (any MMIODevice, UInt64)? {
        for range in mmio {
            if let offset = address.offset(from: range.base), offset < range.size { return (range.device, offset) }
        }
        return nil
    }
}
