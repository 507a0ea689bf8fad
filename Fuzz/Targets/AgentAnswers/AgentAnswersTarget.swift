import AgentProtocol
import FuzzSupport
@testable import Sandbox
import SwiftProtobuf

/// libFuzzer's per-input entry; `main` hands it to libFuzzer.
@_cdecl("LLVMFuzzerTestOneInput")
func LLVMFuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    AgentAnswersTarget.run(FuzzInput(data, size))
    return 0
}

/// The guest agent's answers as the host reads them: the payload of a ttrpc response decoded as
/// the method's response message (Sources/AgentProtocol), the checks `AgentClient` makes
/// (AgentAnswers.swift), and what Sources/Sandbox builds from them: the exit status and the
/// out-of-memory line from a WaitProcess answer (`SandboxExit`, built here for answers the
/// checks refuse too), output chunks, stdin counts. The first byte picks the method, the rest is
/// the payload.
@main
enum AgentAnswersTarget {
    static func main() {
        runFuzzer(seeds: seeds, LLVMFuzzerTestOneInput)
    }

    static func run(_ input: FuzzInput) {
        var input = input
        let method = AgentMethod.allCases[Int(input.byte()) % AgentMethod.allCases.count]
        read(method, input.rest())
    }

    static func read(_ method: AgentMethod, _ payload: [UInt8]) {
        switch method {
        case .waitProcess:
            guard let answer = try? AgentWaitProcessResponse(serializedBytes: payload) else { return }
            let valid = (try? answer.validate()) != nil
            let exit = SandboxExit(answer)
            _ = (valid, exit.status, exit.outOfMemoryMessage(memoryMiB: 256))
        case .readStdout, .readStderr:
            guard let answer = try? AgentReadOutputResponse(serializedBytes: payload) else { return }
            if (try? answer.validate(method)) != nil { _ = [UInt8](answer.data) }
        case .writeStdin:
            guard let answer = try? AgentWriteStdinResponse(serializedBytes: payload) else { return }
            _ = try? answer.validate(sent: 65536)
        case .startProcess, .execProcess:
            _ = try? AgentStartProcessResponse(serializedBytes: payload).pid
        case .createContainer:
            _ = try? AgentCreateContainerResponse(serializedBytes: payload).rootfsPath
        case .stats:
            _ = try? AgentStatsResponse(serializedBytes: payload).memory.usageBytes
        case .closeStdin:
            _ = try? AgentCloseStdinResponse(serializedBytes: payload)
        case .signalProcess:
            _ = try? AgentSignalProcessResponse(serializedBytes: payload)
        case .resizeTerminal:
            _ = try? AgentResizeTerminalResponse(serializedBytes: payload)
        case .removeContainer:
            _ = try? AgentRemoveContainerResponse(serializedBytes: payload)
        case .updateContainer:
            _ = try? AgentUpdateContainerResponse(serializedBytes: payload)
        case .dropCaches:
            // Only logged: the counts are the guest's word.
            _ = try? AgentDropCachesResponse(serializedBytes: payload).cachedBytesAfter
        case .shutdown:
            _ = try? AgentShutdownResponse(serializedBytes: payload)
        }
    }

    /// Answers the real agent gives (encoded with the generated code) and edge values.
    static func seeds() -> [(name: String, bytes: [UInt8])] {
        func seed(_ method: AgentMethod, _ message: some SwiftProtobuf.Message) -> [UInt8] {
            [UInt8(AgentMethod.allCases.firstIndex(of: method)!)] + (try! message.serializedBytes())
        }
        return [
            ("wait-exited", seed(.waitProcess, AgentWaitProcessResponse.with { $0.exitCode = 3 })),
            (
                "wait-killed-oom",
                seed(
                    .waitProcess,
                    AgentWaitProcessResponse.with {
                        $0.signal = 9; $0.oomKilled = true
                    })
            ),
            ("wait-huge-signal", seed(.waitProcess, AgentWaitProcessResponse.with { $0.signal = .max })),
            ("read-chunk", seed(.readStdout, AgentReadOutputResponse.with { $0.data = .init("hello\n".utf8) })),
            ("read-eof", seed(.readStderr, AgentReadOutputResponse.with { $0.eof = true })),
            ("stdin-written", seed(.writeStdin, AgentWriteStdinResponse.with { $0.written = 5 })),
            ("started", seed(.startProcess, AgentStartProcessResponse.with { $0.pid = 42 })),
            ("created", seed(.createContainer, AgentCreateContainerResponse.with { $0.rootfsPath = "/run/rund/c1/rootfs" })),
            (
                "stats",
                seed(
                    .stats,
                    AgentStatsResponse.with {
                        $0.memory.usageBytes = 1 << 20; $0.pids.current = 3
                    })
            ),
        ]
    }
}
