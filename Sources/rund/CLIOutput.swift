import Foundation

/// One JSON object on one line, keys sorted: stable for scripts and tests.
func jsonText<T: Encodable>(_ value: T) throws -> String {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
    return String(decoding: try encoder.encode(value), as: UTF8.self)
}

func printJSON<T: Encodable>(_ value: T) throws {
    print(try jsonText(value))
}
