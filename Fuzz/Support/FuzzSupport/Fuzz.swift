#if canImport(Glibc)
import Glibc
#endif
import FuzzDriver

/// One input's bytes, handed to a target's body. Valid only during the call.
public typealias FuzzBody = @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt

/// The main of every fuzz target. With `--write-seeds DIR` it writes `seeds` (inputs the target
/// builds with the real encoders) into DIR and exits; otherwise it hands its arguments to
/// libFuzzer, which calls `body` once per input, and exits with its status.
public func runFuzzer(seeds: () -> [(name: String, bytes: [UInt8])] = { [] }, _ body: FuzzBody) {
    let arguments = CommandLine.arguments
    if arguments.count == 3, arguments[1] == "--write-seeds" {
        for seed in seeds() {
            let path = arguments[2] + "/" + seed.name
            guard let file = fopen(path, "wb") else {
                perror(path)
                exit(1)
            }
            _ = seed.bytes.withUnsafeBytes { fwrite($0.baseAddress, 1, $0.count, file) }
            fclose(file)
        }
        exit(0)
    }
    var argc = CommandLine.argc
    var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = CommandLine.unsafeArgv
    exit(LLVMFuzzerRunDriver(&argc, &argv, body))
}

/// An input read front to back as a sequence of values. Reading past the end yields zeros and
/// empty arrays, so every byte string is a valid input and the fuzzer never wastes one.
public struct FuzzInput {
    public let bytes: [UInt8]
    public private(set) var position = 0

    public init(_ data: UnsafePointer<UInt8>?, _ size: Int) {
        bytes = size > 0 && data != nil ? Array(UnsafeBufferPointer(start: data, count: size)) : []
    }

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var isEmpty: Bool { position >= bytes.count }
    public var remaining: Int { max(bytes.count - position, 0) }

    public mutating func byte() -> UInt8 {
        guard position < bytes.count else { return 0 }
        defer { position += 1 }
        return bytes[position]
    }

    /// A little-endian integer of `T`'s width.
    public mutating func integer<T: FixedWidthInteger>(_: T.Type = T.self) -> T {
        var value: T = 0
        for shift in stride(from: 0, to: T.bitWidth, by: 8) {
            value |= T(truncatingIfNeeded: byte()) << shift
        }
        return value
    }

    public mutating func bool() -> Bool { byte() & 1 != 0 }

    /// Up to `count` bytes (fewer at the end of the input).
    public mutating func bytes(_ count: Int) -> [UInt8] {
        let take = min(max(count, 0), remaining)
        defer { position += take }
        return Array(bytes[position..<(position + take)])
    }

    /// Everything not read yet.
    public mutating func rest() -> [UInt8] { bytes(remaining) }
}

/// Writes inputs in the format `FuzzInput` reads, for seeds.
public struct FuzzInputBuilder {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func byte(_ value: UInt8) { bytes.append(value) }

    public mutating func integer<T: FixedWidthInteger>(_ value: T) {
        for shift in stride(from: 0, to: T.bitWidth, by: 8) {
            bytes.append(UInt8(truncatingIfNeeded: value >> shift))
        }
    }

    public mutating func append(_ more: [UInt8]) { bytes += more }
}
