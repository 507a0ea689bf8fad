#if canImport(Glibc)
import Glibc
#endif
import FoundationEssentials
import HostOS
import VMM

/// microVM templates (RunD's fast start): a guest booted once to where its agent listens,
/// saved, and then cloned for each sandbox. A clone maps the template's memory copy-on-write,
/// gets its own disks on the template's empty drives, and a fresh identity from the host
/// before its container is made (`GuestIdentity` in the agent).
public enum SandboxTemplate {
    /// Bumped whenever what a template holds changes meaning (devices, agent protocol, boot).
    public static let rundVersion = "0.4.0"

    /// How a sandbox chooses its start.
    public enum Choice: Sendable, Equatable {
        /// A template that fits, else a cold boot.
        case automatic
        /// Always a cold boot.
        case coldBoot
        /// This template, or fail.
        case named(String)
    }
}

extension Sandbox {
    /// The kernel and guest initramfs a sandbox started now would boot.
    public func currentTemplateDependencies() throws -> TemplateDependencies {
        let kernelDirectory = try kernelDirectory
        var version = "unknown"
        if let file = try? FileDescriptor.open(kernelDirectory + "/version", O_RDONLY | O_CLOEXEC) {
            defer { file.close() }
            if let bytes = try? file.readToEnd(limit: 4096) {
                version = String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
            }
        }
        return TemplateDependencies(
            kernelVersion: version,
            kernel: try FileFingerprint.of(path: GuestKernel.bootImage(in: kernelDirectory)),
            initramfs: try GuestInitramfs.cacheKey(
                kernelDirectory: kernelDirectory, agentPath: agentPath, modules: GuestInitramfs.templateModules))
    }

    /// The machine a template holds: the sandbox's devices with empty drives (a clone gets its
    /// disks), the same kernel, initramfs and command line as a cold boot.
    func templateMachineConfiguration(
        kernelDirectory: String, memoryMiB: Int, vcpuCount: Int, initramfs: String, console: String?
    ) -> VMConfiguration {
        var configuration = VMConfiguration(
            kernelPath: GuestKernel.bootImage(in: kernelDirectory), initrdPath: initramfs, extraCommandLine: "quiet",
            memoryMiB: memoryMiB, vcpuCount: vcpuCount, console: console.map { .file($0) } ?? .none)
        configuration.vsockGuestCID = Self.guestCID
        // Its clones give memory back like cold boots: free page reporting, and the balloon.
        configuration.balloon = true
        configuration.stallTimeout = .seconds(60)
        configuration.disks = [.init(path: nil, readOnly: true), .init(path: nil, readOnly: false)]
        return configuration
    }

    /// Boots a guest with rund's kernel and agent, waits until the agent listens (its boot-marker
    /// write), pauses it and saves it as template `name`. Replaces nothing: a template of that
    /// name must not exist. `console`: where the template guest's console goes.
    public func createTemplate(name: String, memoryMiB: Int, vcpuCount: Int, console: String? = nil) throws -> TemplateManifest {
        let name = try TemplateStore.validate(name: name)
        let store = TemplateStore(stateRoot: stateRoot)
        guard !FileSystem.exists(store.directory + "/" + name) else {
            throw SandboxError("template \(name) already exists")
        }
        let dependencies = try currentTemplateDependencies()
        let kernelDirectory = try kernelDirectory
        let initramfs = try GuestInitramfs.path(
            stateRoot: stateRoot, kernelDirectory: kernelDirectory, agentPath: agentPath, modules: GuestInitramfs.templateModules)
        let configuration = templateMachineConfiguration(
            kernelDirectory: kernelDirectory, memoryMiB: memoryMiB, vcpuCount: vcpuCount, initramfs: initramfs, console: console)
        try configuration.validate()

        try FileSystem.makeDirectories(store.directory, mode: 0o700)
        let root = try FileSystem.openDirectory(at: nil, store.directory)
        defer { root.close() }
        let work = TemplateStore.makingPrefix + name + ".\(getpid())"
        try FileSystem.makeDirectory(at: root, work, mode: 0o700)
        var complete = false
        defer { if !complete { try? FileSystem.removeTree(at: root, work) } }

        let machine = try Machine(configuration: configuration, logger: logger)
        let runner = try OSThread.spawn(name: "template-\(name)") { _ = try? machine.run() }
        defer {
            machine.stop(signal: SIGTERM)
            runner.join()
            machine.close()
        }
        let deadline = ContinuousClock.now + .seconds(180)
        while machine.bootMarkerNanoseconds == nil {
            if let exit = machine.exitReason { throw SandboxError("the template's guest ended before its agent was ready: \(exit)") }
            guard ContinuousClock.now < deadline else {
                throw SandboxError(.agentUnresponsive, "the template's guest agent was not ready within 180 s")
            }
            usleep(5000)
        }
        let bootMilliseconds = Int((machine.bootMarkerNanoseconds ?? 0) / 1_000_000)
        try machine.pause()

        let memory = try FileSystem.open(
            at: root, work + "/" + TemplateStore.memoryName, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o400)
        defer { memory.close() }
        let snapshot = try machine.snapshot(writingMemoryTo: memory)
        try memory.fsync()
        let state = try FileSystem.open(
            at: root, work + "/" + TemplateStore.stateName, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o400)
        defer { state.close() }
        try state.writeAll(snapshot.encoded())
        try state.fsync()

        let manifest = TemplateManifest(
            format: TemplateManifest.currentFormat, name: name, rundVersion: SandboxTemplate.rundVersion,
            snapshotFormat: MachineSnapshot.formatVersion, dependencies: dependencies, memoryMiB: memoryMiB,
            vcpuCount: vcpuCount, memoryFile: try FileFingerprint.of(memory),
            createdAt: Int64(time(nil)), bootMilliseconds: bootMilliseconds)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        let manifestFile = try FileSystem.open(
            at: root, work + "/" + TemplateStore.manifestName, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode: 0o600)
        defer { manifestFile.close() }
        try manifestFile.writeAll(Array(try encoder.encode(manifest)))
        try manifestFile.fsync()
        // The name appears only now, complete; a concurrent create of the same name loses here.
        do {
            try FileSystem.rename(at: root, work, toNew: name)
        } catch let error as SystemError where error.errno == EEXIST {
            throw SandboxError("template \(name) already exists")
        }
        complete = true
        logger.info("template created", metadata: ["name": "\(name)", "memoryMiB": "\(memoryMiB)", "bootMs": "\(bootMilliseconds)"])
        return manifest
    }

    /// The template `choice` picks for `spec`, opened, or nil for a cold boot.
    func template(for spec: SandboxSpec, choice: SandboxTemplate.Choice) throws -> TemplateStore.Opened? {
        let store = TemplateStore(stateRoot: stateRoot)
        switch choice {
        case .coldBoot:
            return nil
        case .named(let name):
            return try store.open(name, memoryMiB: spec.memoryMiB, vcpuCount: spec.vcpuCount, current: try currentTemplateDependencies())
        case .automatic:
            guard FileSystem.exists(store.directory) else { return nil }
            let current = try currentTemplateDependencies()
            guard let name = try store.firstMatching(memoryMiB: spec.memoryMiB, vcpuCount: spec.vcpuCount, current: current) else {
                return nil
            }
            do {
                return try store.open(name, memoryMiB: spec.memoryMiB, vcpuCount: spec.vcpuCount, current: current)
            } catch {
                // A damaged template is not used, and the sandbox still starts.
                logger.warning("template not used", metadata: ["name": "\(name)", "reason": "\(error)"])
                return nil
            }
        }
    }
}
