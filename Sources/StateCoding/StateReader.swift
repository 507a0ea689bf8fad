/// Reads what `StateWriter` wrote, bounds-checking every read against the bytes left and every
/// count against a limit the caller gives: a truncated, corrupt or hostile input throws a
/// `StateDecodingError` naming what was being read; nothing is read past the end, no count is
/// trusted to size an allocation, nothing traps.
public struct StateReader: Sendable {
    private let bytes: [UInt8]
    public private(set) var offset = 0

    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
    }

    public var remaining: Int { bytes.count - offset }

    public mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws(StateDecodingError) -> T {
        let raw = try take(MemoryLayout<T>.size, what)
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { $0.copyBytes(from: raw) }
        return T(littleEndian: value)
    }

    public mutating func readBool(_ what: String) throws(StateDecodingError) -> Bool {
        switch try read(UInt8.self, what) {
        case 0: return false
        case 1: return true
        case let other: throw .invalid(what: what, detail: "\(other) is not a boolean")
        }
    }

    /// A byte string of at most `limit` bytes.
    public mutating func readBytes(_ what: String, limit: Int) throws(StateDecodingError) -> [UInt8] {
        let count = try readCount(what, limit: limit)
        return Array(try take(count, what))
    }

    /// A UTF-8 string of at most `limit` bytes.
    public mutating func readString(_ what: String, limit: Int) throws(StateDecodingError) -> String {
        let raw = try readBytes(what, limit: limit)
        guard let text = String(validating: raw, as: UTF8.self) else {
            throw .invalid(what: what, detail: "not UTF-8")
        }
        return text
    }

    /// A kernel ABI struct written by `StateWriter.put(abi:)`: its recorded size must be exactly
    /// this build's size of `T`. Any bit pattern of the integer fields those structs have is a
    /// value of `T`; what the values mean is for the kernel to check when they are set.
    public mutating func readABI<T>(_ type: T.Type, _ what: String) throws(StateDecodingError) -> T {
        precondition(_isPOD(T.self), "readABI takes plain C structs only")
        let size = Int(try read(UInt32.self, what))
        guard size == MemoryLayout<T>.size else {
            throw .sizeMismatch(what: what, size: size, expected: MemoryLayout<T>.size)
        }
        let raw = try take(size, what)
        return withUnsafeTemporaryAllocation(of: T.self, capacity: 1) { buffer in
            let destination = UnsafeMutableRawBufferPointer(buffer)
            destination.copyBytes(from: raw)
            return destination.load(as: T.self)
        }
    }

    public mutating func read<T: StateDecodable>(_ type: T.Type) throws(StateDecodingError) -> T {
        try T(from: &self)
    }

    /// A count (u32) of at most `limit` elements, then each element.
    public mutating func readArray<T: StateDecodable>(_ type: T.Type, _ what: String, limit: Int) throws(StateDecodingError) -> [T] {
        let count = try readCount(what, limit: limit)
        var values: [T] = []
        values.reserveCapacity(count)
        for _ in 0..<count { values.append(try T(from: &self)) }
        return values
    }

    public mutating func readOptional<T: StateDecodable>(_ type: T.Type, _ what: String) throws(StateDecodingError) -> T? {
        try readBool(what) ? try T(from: &self) : nil
    }

    /// Throws unless every byte was read: trailing bytes mean the input is not what we wrote.
    public func finish(_ what: String) throws(StateDecodingError) {
        guard remaining == 0 else { throw .trailingBytes(what: what, count: remaining) }
    }

    private mutating func readCount(_ what: String, limit: Int) throws(StateDecodingError) -> Int {
        let raw = try read(UInt32.self, what)
        guard let count = Int(exactly: raw), count <= limit else {
            throw .tooMany(what: what, count: UInt64(raw), limit: limit)
        }
        return count
    }

    private mutating func take(_ count: Int, _ what: String) throws(StateDecodingError) -> ArraySlice<UInt8> {
        guard count >= 0, count <= remaining else {
            throw .truncated(what: what, offset: offset, needed: count, remaining: remaining)
        }
        defer { offset += count }
        return bytes[offset..<(offset + count)]
    }
}

/// Why saved state could not be read back, in one line.
public enum StateDecodingError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(what: String, offset: Int, needed: Int, remaining: Int)
    case tooMany(what: String, count: UInt64, limit: Int)
    case sizeMismatch(what: String, size: Int, expected: Int)
    case invalid(what: String, detail: String)
    case trailingBytes(what: String, count: Int)

    public var description: String {
        switch self {
        case let .truncated(what, offset, needed, remaining):
            return "ends inside \(what) at byte \(offset): \(needed) bytes needed, \(remaining) left"
        case let .tooMany(what, count, limit): return "\(what) has \(count) entries, at most \(limit) allowed"
        case let .sizeMismatch(what, size, expected): return "\(what) is \(size) bytes, this build's is \(expected)"
        case let .invalid(what, detail): return "\(what) is invalid: \(detail)"
        case let .trailingBytes(what, count): return "\(count) unexpected bytes after \(what)"
        }
    }
}
