#if canImport(Glibc)
import Glibc
#endif
import AgentProtocol
import TTRPC

/// A validated CreateContainer layout: where everything is mounted under /run/rund/<id>, in
/// order (image read-only, writable fs, then the overlay of the two).
public struct RootfsPlan: Sendable, Equatable {
    public var directory: String
    public var imageMount: GuestMount
    public var writableMount: GuestMount
    /// Absolute paths of the overlay's upper and work dirs (on the writable fs), created if absent.
    public var upperDirectory: String
    public var workDirectory: String
    public var overlayMount: GuestMount

    public var rootfs: String { directory + "/rootfs" }

    static let imageTypes: Set<String> = ["erofs", "ext4", "squashfs"]
    static let writableTypes: Set<String> = ["ext4", "xfs"]

    public init(containerID: String, layout: AgentRootfsLayout, runRoot: String = "/run/rund") throws(TTRPCStatus) {
        guard layout.hasImage, layout.hasWritable else {
            throw TTRPCStatus(.invalidArgument, "rootfs needs both an image and a writable block device")
        }
        directory = runRoot + "/" + containerID
        imageMount = try Self.mount(layout.image, at: directory + "/image", types: Self.imageTypes, role: "image", readOnly: true)
        writableMount = try Self.mount(
            layout.writable, at: directory + "/writable", types: Self.writableTypes, role: "writable", readOnly: false)
        let upper = try Self.relative(layout.upperDir, role: "upper_dir")
        let work = try Self.relative(layout.workDir, role: "work_dir")
        guard upper != work else {
            throw TTRPCStatus(.invalidArgument, "upper_dir and work_dir must differ, both are \"\(upper)\"")
        }
        upperDirectory = writableMount.target + "/" + upper
        workDirectory = writableMount.target + "/" + work
        overlayMount = GuestMount(
            source: "overlay", target: directory + "/rootfs", type: "overlay", flags: 0,
            data: "lowerdir=\(imageMount.target),upperdir=\(upperDirectory),workdir=\(workDirectory)")
    }

    private static func mount(
        _ device: AgentBlockDevice, at target: String, types: Set<String>, role: String, readOnly: Bool
    ) throws(TTRPCStatus) -> GuestMount {
        guard device.path.hasPrefix("/dev/"), !device.path.split(separator: "/").contains(".."), !device.path.contains(",") else {
            throw TTRPCStatus(.invalidArgument, "\(role) device \"\(device.path)\" must be a /dev path, e.g. /dev/vda")
        }
        guard types.contains(device.fsType) else {
            throw TTRPCStatus(
                .invalidArgument, "\(role) fs_type \"\(device.fsType)\" is not one of \(types.sorted().joined(separator: ", "))")
        }
        for option in device.options where option.isEmpty || option.contains(",") || option.utf8.contains(0) {
            throw TTRPCStatus(.invalidArgument, "\(role) mount option \"\(option)\" must be one non-empty item without commas")
        }
        return GuestMount(
            source: device.path, target: target, type: device.fsType,
            flags: readOnly ? UInt(MS_RDONLY) : 0,
            data: device.options.isEmpty ? nil : device.options.joined(separator: ","))
    }

    private static func relative(_ path: String, role: String) throws(TTRPCStatus) -> String {
        let parts = path.split(separator: "/")
        guard !path.isEmpty, !path.hasPrefix("/"), !parts.contains(".."), !path.contains(","), !path.contains(":") else {
            throw TTRPCStatus(
                .invalidArgument, "\(role) \"\(path)\" must be a relative path inside the writable fs without '..', ',' or ':'")
        }
        return parts.joined(separator: "/")
    }
}
