/// Appends saved machine state as little-endian bytes: the encoding of rund's snapshots and
/// templates. Every variable-length part is preceded by its length, so `StateReader` can check
/// each one against what is left before it reads it.
public struct StateWriter: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init() {}

    public mutating func put<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { bytes.append(contentsOf: $0) }
    }

    public mutating func put(_ value: Bool) {
        put(UInt8(value ? 1 : 0))
    }

    /// A byte string: its length (u32), then the bytes.
    public mutating func put(bytes value: [UInt8]) {
        put(UInt32(clamping: value.count))
        bytes.append(contentsOf: value.prefix(Int(UInt32.max)))
    }

    public mutating func put(string value: String) {
        put(bytes: Array(value.utf8))
    }

    /// A kernel ABI struct (a `<linux/kvm.h>` type such as `kvm_regs`): its size (u32), then its
    /// bytes as the kernel laid them out. The layout of those structs is the kernel's stable user
    /// ABI, on this one architecture (x86-64, little-endian); the size tag makes a file written
    /// against other headers fail to decode instead of being misread.
    /// (Plain C structs only; Swift does not infer BitwiseCopyable for those with unions, such as
    /// `kvm_irqchip`, hence the check rather than a constraint.)
    public mutating func put<T>(abi value: T) {
        precondition(_isPOD(T.self), "put(abi:) takes plain C structs only")
        put(UInt32(MemoryLayout<T>.size))
        withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
    }

    public mutating func put(_ value: some StateEncodable) {
        value.encode(to: &self)
    }

    /// A count (u32), then each element.
    public mutating func put<T: StateEncodable>(array values: [T]) {
        put(UInt32(clamping: values.count))
        for value in values.prefix(Int(UInt32.max)) { value.encode(to: &self) }
    }

    public mutating func put<T: StateEncodable>(optional value: T?) {
        put(value != nil)
        if let value { value.encode(to: &self) }
    }
}

/// A value that saves itself into a `StateWriter`.
public protocol StateEncodable {
    func encode(to writer: inout StateWriter)
}

/// A value that reads itself back from a `StateReader`, checking everything it reads: a
/// corrupt or hostile file is refused with a `StateDecodingError`, never trusted or trapped on.
public protocol StateDecodable {
    init(from reader: inout StateReader) throws(StateDecodingError)
}

public typealias StateCodable = StateEncodable & StateDecodable
