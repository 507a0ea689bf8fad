#if canImport(Glibc)
import Glibc
#endif
import HostOS

/// Turns an applied tree into one EROFS image: uncompressed, 4 KiB blocks (mkfs.erofs uses the
/// page size), and no tail-packed inline data so a guest can later map files with DAX.
public enum EROFSBuilder {
    public static func build(tree: String, output: String) throws {
        do {
            try Subprocess.checked(["mkfs.erofs", "--quiet", "-Enoinline_data", output, tree])
        } catch let error as SystemError where error.errno == ENOENT {
            throw StorageError(.io, "mkfs.erofs not found; install the erofs-utils package")
        } catch let failure as Subprocess.Failure {
            throw StorageError(.io, "building the EROFS image failed: \(failure)")
        }
    }
}
