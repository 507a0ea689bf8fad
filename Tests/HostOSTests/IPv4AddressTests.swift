import HostOS
import Testing

@Suite struct IPv4AddressTests {
    @Test func bytesNetmasksAndText() {
        let address = IPv4Address(10, 1, 2, 3)
        #expect(address.value == 0x0A01_0203)
        #expect(address.bytes == [10, 1, 2, 3])
        #expect(address.description == "10.1.2.3")
        #expect(IPv4Address(bytes: [10, 1, 2, 3]) == address)
        #expect(IPv4Address(bytes: [10, 1, 2]) == nil)
        #expect(IPv4Address(bytes: [UInt8](repeating: 0, count: 16)) == nil)
        #expect(address.networkOrder == UInt32(0x0A01_0203).bigEndian)
        #expect(IPv4Address(netmaskOfLength: 0).description == "0.0.0.0")
        #expect(IPv4Address(netmaskOfLength: 20).description == "255.255.240.0")
        #expect(IPv4Address(netmaskOfLength: 32).description == "255.255.255.255")
    }
}
