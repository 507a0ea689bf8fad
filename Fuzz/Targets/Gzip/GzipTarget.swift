import FuzzSupport

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    GzipTarget.run(FuzzInput(data, size))
    return 0
}

/// Compressed layers (Sources/Storage/ByteSource.swift: GzipSource over CZlib, concatenated
/// members, truncation, trailing padding), through StorageAdapter. The input is the gzip stream.
@main
enum GzipTarget {
    static func main() {
        runFuzzer(LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        StorageAdapter.inflate(input.bytes, limit: 16 << 20)
    }
}
