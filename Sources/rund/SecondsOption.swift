import ArgumentParser

/// A duration option in seconds, checked before it becomes nanoseconds: nan, inf and values out
/// of `range` are refused with a line naming the option.
enum SecondsOption {
    static func check(_ value: Double?, _ option: String, in range: ClosedRange<Double>) throws {
        guard let value, !range.contains(value) else { return }
        throw ValidationError("\(option) must be \(format(range.lowerBound)) to \(format(range.upperBound)) seconds, got \(value)")
    }

    private static func format(_ bound: Double) -> String {
        bound == bound.rounded() ? String(Int(bound)) : String(bound)
    }
}
