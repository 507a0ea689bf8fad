import HostOS

/// A storage failure, as one line saying what failed (a CLI adds which of its options to change).
public struct StorageError: Error, CustomStringConvertible, Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case badInput, unsupported, digestMismatch, notFound, registry, io
        /// An image or registry went past a `StorageLimits` bound.
        case limitExceeded
        /// The registry could not be reached, or did not answer in time.
        case registryUnreachable, registryTimedOut
        /// The store holds no image by that reference.
        case notInStore
        /// This host lacks what the operation needs (e.g. a filesystem that can reflink).
        case hostUnsupported
    }

    public let kind: Kind
    public let message: String

    /// Messages quote names and strings from images and registries; any line break or control
    /// character in them is escaped here, so the message is always exactly one line.
    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = Self.oneLine(message)
    }

    public var description: String { message }

    static func oneLine(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: Self.breaksLine) else { return text }
        var out = ""
        for scalar in text.unicodeScalars {
            if Self.breaksLine(scalar) {
                out += Self.escape(scalar)
            } else {
                out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    private static func breaksLine(_ scalar: Unicode.Scalar) -> Bool {
        switch scalar.properties.generalCategory {
        case .control, .lineSeparator, .paragraphSeparator: return true
        default: return false
        }
    }

    private static func escape(_ scalar: Unicode.Scalar) -> String {
        String(scalar).utf8.map { "\\x" + ($0 < 16 ? "0" : "") + String($0, radix: 16) }.joined()
    }
}
