/// The command line containerd gives a shim, parsed the way Go's `flag` package does:
/// `-name value`, `-name=value`, `--name value`; boolean flags take no value; the action is the
/// last positional argument (`start`, `delete`, or none to serve). Flags this shim does not know
/// are tolerated (newer containerd versions add some): `-x=v` is skipped whole, a bare `-x` is
/// taken for a boolean.
public struct ShimArguments: Sendable, Equatable {
    public enum Action: String, Sendable, Equatable {
        case start
        case delete
        /// No action word: the long-running server (what `start` spawns).
        case serve
    }

    public var namespace = ""
    /// containerd's main (gRPC) socket; events go to `<address>.ttrpc` (`TTRPC_ADDRESS`).
    public var address = ""
    public var publishBinary = ""
    public var id = ""
    /// Only on `delete`; `start` and serve take the bundle from the working directory.
    public var bundle = ""
    /// A socket path to serve on instead of the listener on fd 3 (the Go library's `-socket`).
    public var socket = ""
    public var debug = false
    public var version = false
    public var action = Action.serve

    static let valueFlags: Set<String> = ["namespace", "address", "publish-binary", "id", "bundle", "socket"]
    static let booleanFlags: Set<String> = ["debug", "v", "version", "info"]

    public init() {}

    public static func parse(_ arguments: [String]) throws(ShimError) -> ShimArguments {
        var result = ShimArguments()
        var positionals: [String] = []
        var index = 0
        while index < arguments.count {
            let argument = arguments[index]
            index += 1
            if argument == "--" {
                positionals += arguments[index...]
                break
            }
            guard argument.hasPrefix("-"), argument != "-" else {
                positionals.append(argument)
                continue
            }
            var name = String(argument.drop(while: { $0 == "-" }))
            var value: String?
            if let equals = name.firstIndex(of: "=") {
                value = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if valueFlags.contains(name) {
                if value == nil {
                    guard index < arguments.count else { throw ShimError(.invalidArgument, "flag -\(name) needs a value") }
                    value = arguments[index]
                    index += 1
                }
                result.set(name, value ?? "")
            } else if booleanFlags.contains(name) {
                let on = value.map { ["1", "t", "true", "TRUE", "True"].contains($0) } ?? true
                if name == "debug" { result.debug = on } else if name == "v" || name == "version" { result.version = on }
            }
            // Unknown flags: ignored.
        }
        if let last = positionals.last {
            guard let action = Action(rawValue: last), action != .serve else {
                throw ShimError(.invalidArgument, "unknown action \"\(last.prefix(40))\": use start or delete")
            }
            result.action = action
        }
        return result
    }

    private mutating func set(_ name: String, _ value: String) {
        switch name {
        case "namespace": namespace = value
        case "address": address = value
        case "publish-binary": publishBinary = value
        case "id": id = value
        case "bundle": bundle = value
        case "socket": socket = value
        default: break
        }
    }

    /// The arguments the serving process is started with (what the Go shims pass it).
    var serveArguments: [String] {
        ["-namespace", namespace, "-id", id, "-address", address, "-publish-binary", publishBinary] + (debug ? ["-debug"] : [])
    }
}
