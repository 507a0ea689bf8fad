import FuzzSupport

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    TarReaderTarget.run(FuzzInput(data, size))
    return 0
}

/// Layer and image-archive tars (Sources/Storage/Layers/TarReader.swift): ustar, pax (per file
/// and global), GNU long names and links, base-256 numbers, through StorageAdapter. The input
/// is the tar stream itself.
@main
enum TarReaderTarget {
    static func main() {
        runFuzzer(LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        StorageAdapter.readArchive(input.bytes)
    }
}
