/// Nearest-rank percentile (`fraction` in 0...1) of a small sample; NaN when empty.
package enum Percentile {
    package static func of(_ values: [Double], fraction: Double) -> Double {
        guard !values.isEmpty else { return .nan }
        let sorted = values.sorted()
        let rank = Int((fraction * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}

/// A benchmark that could not measure, as one line in its own terms.
package struct BenchError: Error, CustomStringConvertible, Sendable {
    package let description: String
    package init(_ description: String) { self.description = description }
}

/// Which build measured: debug figures are not release figures.
enum BuildConfiguration {
    #if DEBUG
    static let name = "debug"
    #else
    static let name = "release"
    #endif
}
