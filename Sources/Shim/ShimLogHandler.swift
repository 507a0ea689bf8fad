#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import HostOS
import Logging
import Synchronization

/// swift-log lines in logrus's text format (`time=... level=info msg="..." key=value`), the
/// format containerd copies from a shim's log FIFO into its own log. One write per line.
public struct ShimLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    let output: ShimLogOutput

    public init(output: ShimLogOutput, level: Logger.Level, metadata: Logger.Metadata = [:]) {
        self.output = output
        logLevel = level
        self.metadata = metadata
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var line = "time=\"\(Self.timestamp())\" level=\(Self.name(event.level)) msg=\(Self.quote(event.message.description))"
        let all = metadata.merging(event.metadata ?? [:]) { $1 }
        for key in all.keys.sorted() {
            line += " \(key)=\(Self.quote(all[key].map { "\($0)" } ?? ""))"
        }
        output.write(line + "\n")
    }

    static func name(_ level: Logger.Level) -> String {
        switch level {
        case .trace: "trace"
        case .debug: "debug"
        case .info, .notice: "info"
        case .warning: "warning"
        case .error: "error"
        case .critical: "fatal"
        }
    }

    /// A logrus value: quoted when it holds anything but plain word characters.
    static func quote(_ text: String) -> String {
        let plain =
            !text.isEmpty
            && text.unicodeScalars.allSatisfy {
                $0.properties.isAlphabetic || ("0"..."9").contains($0) || "-._/:".unicodeScalars.contains($0)
            }
        if plain { return text }
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\t": out += "\\t"
            default:
                if scalar.value < 0x20 || scalar.value == 0x7f {
                    out +=
                        "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    out.unicodeScalars.append(scalar)
                }
            }
        }
        return out + "\""
    }

    static func timestamp() -> String {
        Date.now.formatted(.iso8601.year().month().day().time(includingFractionalSeconds: true).timeZone(separator: .omitted))
    }
}

/// Where a shim's log lines go: the bundle's `log` FIFO (the serving process) or stderr
/// (`delete`, whose stderr containerd logs). A reader that went away drops lines, never the shim.
public final class ShimLogOutput: Sendable {
    private let descriptor: Mutex<FileDescriptor?>

    public init(_ descriptor: FileDescriptor?) {
        self.descriptor = Mutex(descriptor)
    }

    func write(_ line: String) {
        descriptor.withLock { descriptor in
            guard let fd = descriptor else { return }
            if (try? fd.writeAll(line)) == nil { descriptor = nil }
        }
    }
}
