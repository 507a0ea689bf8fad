import FuzzSupport
import Logging
import SwiftProtobuf
@testable import TTRPC

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    TTRPCFramesTarget.run(FuzzInput(data, size))
    return 0
}

/// A ttrpc byte stream from a hostile peer (Sources/TTRPC): frames are cut from it by the real
/// `FrameReader` (delivered in short reads of varying size, as a socket or vsock does), and each
/// frame is read as the client reads a server's answer (`TTRPCClient.answer(to:)`: Response
/// decoding, status mapping) and as the server reads a client's request
/// (`TTRPCServerConnection.request(in:)`, the call's context, handler lookup). The input is the
/// stream itself.
@main
enum TTRPCFramesTarget {
    /// A server with one method, so lookups can both succeed and fail.
    static let server: TTRPCServer = {
        let server = TTRPCServer(logger: .init(label: "fuzz") { _ in SwiftLogNoOpLogHandler() })
        server.register(service: "containerd.task.v2.Task", method: "Connect") { _, payload in payload }
        return server
    }()

    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var reader = FrameReader(stream: MemoryStream(input.bytes))
        while let incoming = try? reader.next() {
            if let (_, result) = TTRPCClient.answer(to: incoming), case .failure(let error) = result {
                _ = "\(error)"
            }
            switch TTRPCServerConnection.request(in: incoming) {
            case .call(let request, let streamID):
                let context = TTRPCServerConnection.context(of: request, streamID: streamID)
                _ = context.metadata("containerd-namespace-ttrpc")
                if case .failure(let status) = server.handler(service: context.service, method: context.method) {
                    _ = status.description
                }
            case .refused(_, let status):
                _ = status.description
            case .ignored:
                break
            }
        }
    }

    /// A byte stream over the input whose reads return a few bytes to a few KiB at a time.
    final class MemoryStream: ByteStream, @unchecked Sendable {
        private let bytes: [UInt8]
        private var position = 0
        private var reads = 0

        init(_ bytes: [UInt8]) {
            self.bytes = bytes
        }

        func read(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
            reads += 1
            let chunk = [1, 7, 4096, 10, 3, 65536][reads % 6]
            let count = min(buffer.count, bytes.count - position, chunk)
            guard count > 0 else { return 0 }
            bytes.withUnsafeBytes { buffer.copyMemory(from: UnsafeRawBufferPointer(rebasing: $0[position..<(position + count)])) }
            position += count
            return count
        }

        func write(_ bytes: UnsafeRawBufferPointer) throws {}
        func close() {}
    }

    /// Frames from containerd 1.6.20 / ttrpc 1.1.1 (Tests/TTRPCTests/TraceFixtureTests.swift)
    /// and ones built with our encoder: requests with metadata and timeout, answers with and
    /// without a status, an empty answer, a data frame, an oversized header.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func frame(_ streamID: UInt32, _ type: UInt8, _ message: some SwiftProtobuf.Message) -> [UInt8] {
            Frame(streamID: streamID, type: type, payload: try! message.serializedBytes()).encoded
        }
        let connect = Ttrpc_Request.with {
            $0.service = "containerd.task.v2.Task"
            $0.method = "Connect"
            $0.payload = .init([0x0a, 0x03] + Array("t14".utf8))
            $0.timeoutNano = 4_999_988_919
            $0.metadata = [
                .with {
                    $0.key = "containerd-namespace-ttrpc"; $0.value = "default"
                }
            ]
        }
        let answer = Ttrpc_Response.with { $0.payload = .init([0x08, 0xf8, 0x84, 0x01, 0x10, 0x98, 0x85, 0x01]) }
        let failure = Ttrpc_Response.with {
            $0.status.code = 2
            $0.status.message = "cannot pause a paused container"
        }
        return [
            ("request", frame(1, FrameType.request, connect)),
            ("response", frame(1, FrameType.response, answer)),
            ("error-response", frame(19, FrameType.response, failure)),
            ("empty-response", FrameHeader(length: 0, streamID: 17, type: FrameType.response).encoded),
            ("even-stream-and-data", frame(2, FrameType.request, connect) + frame(3, FrameType.data, answer)),
            (
                "unknown-method",
                frame(
                    5, FrameType.request,
                    Ttrpc_Request.with {
                        $0.service = "x"; $0.method = "y"
                    })
            ),
            ("oversized", FrameHeader(length: (4 << 20) + 1, streamID: 7, type: FrameType.request).encoded + [1, 2, 3]),
        ]
    }
}
