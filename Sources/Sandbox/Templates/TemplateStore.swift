#if canImport(Glibc)
import Glibc
#endif
import Cgroups
import FoundationEssentials
import HostOS
import VMM

/// The templates under `<state root>/templates/`, one directory each: `manifest.json`,
/// `machine.state` (the encoded `MachineSnapshot`) and `memory` (guest RAM, sparse). A template
/// is made in a `.making-<name>.<pid>` directory and renamed into place once complete, so a
/// name that exists is a whole template; `rund gc` removes what a crashed `create` left.
public struct TemplateStore: Sendable {
    public static let manifestName = "manifest.json"
    public static let stateName = "machine.state"
    public static let memoryName = "memory"
    static let makingPrefix = ".making-"

    public let directory: String

    public init(stateRoot: String) {
        directory = stateRoot + "/templates"
    }

    /// A template name: the same rules as a sandbox id.
    public static func validate(name: String) throws -> String {
        do {
            return try SandboxID.validate(name)
        } catch {
            throw SandboxError("invalid template name \"\(name.prefix(80))\": use 1-64 characters from A-Z a-z 0-9 _ . -")
        }
    }

    /// Every complete template's manifest, by name; a directory whose manifest cannot be read
    /// is listed with the reason.
    public func list() throws -> [(name: String, manifest: Result<TemplateManifest, SandboxError>)] {
        guard FileSystem.exists(directory) else { return [] }
        let root = try FileSystem.openDirectory(at: nil, directory)
        defer { root.close() }
        return try FileSystem.entries(of: root).filter { !$0.hasPrefix(".") }.sorted().map { name in
            (name, Result { try manifest(name) }.mapError { $0 as? SandboxError ?? SandboxError("\($0)") })
        }
    }

    /// The manifest of template `name`.
    public func manifest(_ name: String) throws -> TemplateManifest {
        let path = directory + "/" + (try Self.validate(name: name)) + "/" + Self.manifestName
        guard FileSystem.exists(path) else { throw SandboxError("there is no template \(name)") }
        let bytes: [UInt8]
        do {
            let file = try FileSystem.open(at: nil, path, O_RDONLY | O_CLOEXEC)
            defer { file.close() }
            bytes = try file.readToEnd(limit: 1 << 20)
        } catch {
            throw SandboxError("template \(name): cannot read its manifest: \(error)")
        }
        let manifest: TemplateManifest
        do {
            manifest = try JSONDecoder().decode(TemplateManifest.self, from: Data(bytes))
        } catch {
            throw SandboxError("template \(name): its manifest is not one this rund reads")
        }
        guard manifest.format == TemplateManifest.currentFormat, manifest.name == name else {
            throw SandboxError("template \(name): its manifest is not one this rund reads (format \(manifest.format))")
        }
        return manifest
    }

    /// Removes template `name` (false when there is none). A sandbox cloned from it keeps its
    /// memory mapped and runs on.
    @discardableResult
    public func remove(_ name: String) throws -> Bool {
        let name = try Self.validate(name: name)
        guard FileSystem.exists(directory + "/" + name) else { return false }
        let root = try FileSystem.openDirectory(at: nil, directory)
        defer { root.close() }
        // Renamed away first, so no clone starts from a half-removed template.
        let doomed = Self.makingPrefix + name + ".\(getpid()).removing"
        try FileSystem.rename(at: root, name, to: doomed)
        try FileSystem.removeTree(at: root, doomed)
        return true
    }

    /// Directories a `create` or `remove` left when its process died: removed unless `dryRun`.
    public func reclaimAbandoned(dryRun: Bool) throws -> [String] {
        guard FileSystem.exists(directory) else { return [] }
        let root = try FileSystem.openDirectory(at: nil, directory)
        defer { root.close() }
        var reclaimed: [String] = []
        for entry in try FileSystem.entries(of: root) where entry.hasPrefix(Self.makingPrefix) {
            guard let owner = Self.owner(ofWorkDirectory: entry), kill(owner, 0) != 0, errno == ESRCH else { continue }
            if !dryRun { try FileSystem.removeTree(at: root, entry) }
            reclaimed.append(entry)
        }
        return reclaimed
    }

    /// `.making-NAME.PID[.removing]` → PID.
    static func owner(ofWorkDirectory entry: String) -> pid_t? {
        var parts = entry.split(separator: ".", omittingEmptySubsequences: false)
        if parts.last == "removing" { parts.removeLast() }
        return parts.last.flatMap { pid_t($0) }
    }

    /// A template opened for cloning: checked against what a sandbox needs now.
    public struct Opened: Sendable {
        public let manifest: TemplateManifest
        public let snapshot: MachineSnapshot
        /// Read-only; mapped privately by every clone.
        public let memory: FileDescriptor
    }

    /// Opens template `name` for a sandbox of `memoryMiB` and `vcpuCount` running on `current`.
    /// Refused in one line when anything differs or a file is damaged; nothing is left open then.
    public func open(_ name: String, memoryMiB: Int, vcpuCount: Int, current: TemplateDependencies) throws -> Opened {
        let manifest = try manifest(name)
        if let reason = Self.mismatch(manifest, memoryMiB: memoryMiB, vcpuCount: vcpuCount, current: current) {
            throw SandboxError("template \(name) does not fit: \(reason)")
        }
        let base = directory + "/" + name + "/"
        let memory = try FileSystem.open(at: nil, base + Self.memoryName, O_RDONLY | O_CLOEXEC)
        do {
            guard try FileFingerprint.of(memory) == manifest.memoryFile else {
                throw SandboxError("template \(name) is damaged: its memory file changed since it was made")
            }
            let state = try FileSystem.open(at: nil, base + Self.stateName, O_RDONLY | O_CLOEXEC)
            defer { state.close() }
            let snapshot: MachineSnapshot
            do {
                snapshot = try MachineSnapshot(decoding: try state.readToEnd(limit: 64 << 20))
            } catch let error as MachineSnapshotError {
                throw SandboxError("template \(name) is damaged: \(error)")
            }
            guard snapshot.memoryMiB == manifest.memoryMiB, snapshot.vcpus.count == manifest.vcpuCount else {
                throw SandboxError("template \(name) is damaged: its machine state does not match its manifest")
            }
            return Opened(manifest: manifest, snapshot: snapshot, memory: memory)
        } catch {
            memory.close()
            throw error
        }
    }

    /// Why `manifest` cannot serve a sandbox of this size on `current`, or nil.
    static func mismatch(_ manifest: TemplateManifest, memoryMiB: Int, vcpuCount: Int, current: TemplateDependencies) -> String? {
        if manifest.rundVersion != SandboxTemplate.rundVersion || manifest.snapshotFormat != MachineSnapshot.formatVersion {
            return "it was made by rund \(manifest.rundVersion), this is \(SandboxTemplate.rundVersion)"
        }
        if manifest.memoryMiB != memoryMiB { return "it has \(manifest.memoryMiB) MiB of memory, the sandbox asks for \(memoryMiB) MiB" }
        if manifest.vcpuCount != vcpuCount { return "it has \(manifest.vcpuCount) vCPUs, the sandbox asks for \(vcpuCount)" }
        return manifest.dependencies.mismatch(against: current)
    }

    /// Why `manifest` cannot serve sandboxes on `current` at all (whatever their size), or nil.
    public static func problem(_ manifest: TemplateManifest, current: TemplateDependencies) -> String? {
        mismatch(manifest, memoryMiB: manifest.memoryMiB, vcpuCount: manifest.vcpuCount, current: current)
    }

    /// The first template (by name) that fits, or nil. Templates that cannot be read are
    /// skipped here (`rund template ls` shows why).
    public func firstMatching(memoryMiB: Int, vcpuCount: Int, current: TemplateDependencies) throws -> String? {
        try list().first { entry in
            guard case .success(let manifest) = entry.manifest else { return false }
            return Self.mismatch(manifest, memoryMiB: memoryMiB, vcpuCount: vcpuCount, current: current) == nil
        }?.name
    }
}
