import ArgumentParser
import Foundation
import HostOS
import Storage

/// `rund image`: the OCI image store (each image kept as one EROFS root filesystem).
struct ImageCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "image",
        abstract: "Import, pull, list and remove images (stored as one EROFS file per image).",
        discussion: """
            Images live under <root>/images, addressed by their config digest. Layers are applied
            with OCI whiteouts and turned into one read-only EROFS image, built once and shared
            by every sandbox.
            """,
        subcommands: [Pull.self, Import.self, List.self, Remove.self]
    )

    struct Pull: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Pull an image from a registry (v2 API), linux/amd64, verifying every blob.")

        @OptionGroup var rootOptions: RootOptions
        @Argument(help: "Image reference, e.g. busybox, docker.io/library/debian:12, localhost:5000/app@sha256:...")
        var reference: String
        @Flag(help: "Use plain HTTP (for a local registry without TLS).")
        var insecure = false
        @Option(help: "Seconds to wait for the registry to answer before giving up.")
        var timeout: Double = 60
        @Flag(help: "Print the stored image as JSON.")
        var json = false

        func validate() throws {
            try SecondsOption.check(timeout, "--timeout", in: 0.1...86400)
        }

        func run() async throws {
            try await ImageCommand.reportingFailure {
                let store = ImageStore(root: StateRoot.resolve(rootOptions.root))
                let onTerminal = isatty(2) == 1 && !json
                var progress: (@Sendable (String) -> Void)?
                if onTerminal { progress = { @Sendable line in ImageCommand.progress(line) } }
                let image = try await store.pull(reference: reference, insecure: insecure, timeout: timeout, progress: progress)
                try ImageCommand.report(image, json: json)
            }
        }
    }

    struct Import: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Import an OCI image-layout tarball or a `docker save` archive (optionally gzipped).")

        @OptionGroup var rootOptions: RootOptions
        @Argument(help: "The archive file.")
        var file: String
        @Option(help: "Also name the image REF (archives from `docker save` carry their own names).")
        var tag: String?
        @Flag(help: "Print the stored image as JSON.")
        var json = false

        func run() async throws {
            try await ImageCommand.reportingFailure {
                let store = ImageStore(root: StateRoot.resolve(rootOptions.root))
                if isatty(2) == 1 && !json { ImageCommand.progress("importing \(file)") }
                try ImageCommand.report(try store.import(path: file, reference: tag), json: json)
            }
        }
    }

    struct List: AsyncParsableCommand {
        static let configuration = CommandConfiguration(commandName: "ls", abstract: "List stored images.")

        @OptionGroup var rootOptions: RootOptions
        @Flag(help: "Print a JSON array.")
        var json = false

        func run() async throws {
            try await ImageCommand.reportingFailure {
                let images = try ImageStore(root: StateRoot.resolve(rootOptions.root)).list()
                if json {
                    print(try jsonText(images))
                    return
                }
                print(ImageCommand.pad("IMAGE ID", 14) + ImageCommand.pad("SIZE", 10) + ImageCommand.pad("LAYERS", 8) + "NAMES")
                for image in images {
                    let names = image.references.isEmpty ? "<none>" : image.references.joined(separator: ", ")
                    print(
                        ImageCommand.pad(image.shortID, 14) + ImageCommand.pad(ImageCommand.size(image.sizeBytes), 10)
                            + ImageCommand.pad(String(image.layerCount), 8) + names)
                }
            }
        }
    }

    struct Remove: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "rm",
            abstract: "Remove an image name; the image goes with its last name. An id removes the image.")

        @OptionGroup var rootOptions: RootOptions
        @Argument(help: "Names or ids (as `rund image ls` shows them).")
        var references: [String]

        func run() async throws {
            try await ImageCommand.reportingFailure {
                let store = ImageStore(root: StateRoot.resolve(rootOptions.root))
                for reference in references {
                    let removed = try store.remove(reference: reference)
                    print(removed.isEmpty ? "untagged \(reference)" : removed.map { "deleted \($0)" }.joined(separator: "\n"))
                }
            }
        }
    }

    // MARK: Output

    /// Runs a subcommand; a failure is one `rund: ...` line on stderr and exit status 1 (the
    /// store's errors quote names from images, so any line break left in one is flattened here).
    static func reportingFailure(_ body: () async throws -> Void) async throws {
        do {
            try await body()
        } catch let exit as ExitCode {
            throw exit
        } catch {
            FileHandle.standardError.write(Data(CLIAdvice.line(for: error).utf8 + [0x0a]))
            throw ExitCode(1)
        }
    }

    static func report(_ image: StoredImage, json: Bool) throws {
        if json {
            print(try jsonText(image))
        } else {
            let name = image.references.first ?? image.shortID
            print("\(name) \(image.id) \(size(image.sizeBytes)) \(image.erofsPath)")
        }
    }

    static func progress(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func size(_ bytes: Int64) -> String {
        bytes >= 1 << 30
            ? String(format: "%.1fG", Double(bytes) / Double(1 << 30))
            : bytes >= 1 << 20
                ? String(format: "%.1fM", Double(bytes) / Double(1 << 20))
                : String(format: "%.0fK", Double(bytes) / 1024)
    }

    static func pad(_ text: String, _ width: Int) -> String {
        text.count >= width ? text + " " : text + String(repeating: " ", count: width - text.count)
    }
}
