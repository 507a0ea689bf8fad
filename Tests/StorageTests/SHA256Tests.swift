import Foundation
import HostOS
import Testing
@testable import Storage

@Suite struct SHA256Tests {
    @Test func knownVectors() {
        #expect(SHA256.hash([]) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(SHA256.hash(Array("abc".utf8)) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
    }

    @Test func incrementalUpdatesMatchOneShot() {
        let data = (0..<10_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        var hasher = SHA256()
        var offset = 0
        for size in [1, 63, 64, 65, 127, 1000, 3] {
            hasher.update(Array(data[offset..<(offset + size)]))
            offset += size
        }
        hasher.update(Array(data[offset...]))
        #expect(hasher.finalizeHex() == SHA256.hash(data))
    }

    @Test(.enabled(if: Fixtures.hasTool("sha256sum"), "needs sha256sum (coreutils)"))
    func matchesSha256sum() throws {
        let expected = try Subprocess.checked(["sha256sum", "/bin/busybox"]).stdoutText.prefix(64)
        #expect(SHA256.hash(Fixtures.busybox) == String(expected))
    }
}
