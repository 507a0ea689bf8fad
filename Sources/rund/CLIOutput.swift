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

/// Nearest-rank percentile (`fraction` in 0...1) of a small sample; NaN when empty.
enum Percentile {
    static func of(_ values: [Double], fraction: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}
