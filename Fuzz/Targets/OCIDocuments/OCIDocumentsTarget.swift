import FuzzSupport

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    OCIDocumentsTarget.run(FuzzInput(data, size))
    return 0
}

/// The JSON documents of an OCI image layout and a `docker save` archive
/// (Sources/Storage/Images/OCI.swift, ImageArchive.swift, ImageReference.swift): index,
/// manifest, image config and manifest.json, decoded and used as an import uses them, through
/// StorageAdapter. The input is one document.
@main
enum OCIDocumentsTarget {
    static func main() {
        runFuzzer(LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        StorageAdapter.readDocuments(input.bytes)
    }
}
