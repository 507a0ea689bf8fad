import StateCoding
import Testing

/// The framing and field reading every saved machine state goes through: what is not exactly
/// what was written is refused in one line, before or while decoding, never read past its end.
struct StateCodingTests {
    static let magic = StateMagic("RUNDTEST", name: "test state")

    @Test func aSealedPayloadOpensAndAnythingElseIsRefused() throws {
        var writer = StateWriter()
        writer.put(UInt32(7))
        writer.put(true)
        writer.put(UInt64.max)
        let sealed = StateEnvelope.seal(writer.bytes, magic: Self.magic, version: 3)
        #expect(try StateEnvelope.open(sealed, magic: Self.magic, version: 3) == writer.bytes)

        var flipped = sealed
        flipped[sealed.count - 1] ^= 1
        #expect(throws: StateEnvelopeError.checksumMismatch(kind: "test state")) {
            try StateEnvelope.open(flipped, magic: Self.magic, version: 3)
        }
        #expect(throws: StateEnvelopeError.unsupportedVersion(kind: "test state", found: 3, supported: 4)) {
            try StateEnvelope.open(sealed, magic: Self.magic, version: 4)
        }
        #expect(throws: StateEnvelopeError.notThisKind("other state")) {
            try StateEnvelope.open(sealed, magic: StateMagic("RUNDOTHR", name: "other state"), version: 3)
        }
        #expect(throws: StateEnvelopeError.lengthMismatch(kind: "test state", recorded: 13, actual: 12)) {
            try StateEnvelope.open(Array(sealed.dropLast()), magic: Self.magic, version: 3)
        }
        #expect(throws: StateEnvelopeError.notThisKind("test state")) { try StateEnvelope.open([1, 2], magic: Self.magic, version: 3) }
    }

    @Test func theReaderStopsAtItsEndAndAtItsLimits() throws {
        var writer = StateWriter()
        writer.put(UInt16(0xbeef))
        writer.put(UInt8(2))
        var reader = StateReader(writer.bytes)
        #expect(try reader.read(UInt16.self, "a") == 0xbeef)
        #expect(throws: StateDecodingError.invalid(what: "flag", detail: "2 is not a boolean")) { try reader.readBool("flag") }
        #expect(throws: StateDecodingError.truncated(what: "b", offset: 3, needed: 4, remaining: 0)) {
            try reader.read(UInt32.self, "b")
        }

        var counted = StateWriter()
        counted.put(UInt32(1_000_000))
        var tooMany = StateReader(counted.bytes)
        #expect(throws: StateDecodingError.self) { try tooMany.readBytes("blob", limit: 1024) }

        var trailing = StateReader([0, 0, 0, 0, 9])
        _ = try trailing.read(UInt32.self, "x")
        #expect(throws: StateDecodingError.trailingBytes(what: "the test state", count: 1)) { try trailing.finish("the test state") }
    }
}
