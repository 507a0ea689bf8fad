import AgentProtocol
import FoundationEssentials
import Testing

/// The checks `AgentClient` makes on the guest agent's answers (AgentAnswers.swift), at their
/// boundaries.
@Suite struct AgentAnswerTests {
    @Test func waitAnswersFitAnEightBitStatus() throws {
        for valid in [
            AgentWaitProcessResponse.with { $0.exitCode = 0 }, .with { $0.exitCode = 255 },
            .with { $0.signal = 1 },
            .with {
                $0.signal = 127; $0.oomKilled = true
            },
        ] {
            try valid.validate()
        }
        let refused: [(AgentWaitProcessResponse, String)] = [
            (.with { $0.exitCode = 256 }, "exit code 256"),
            (.with { $0.exitCode = -1 }, "exit code -1"),
            (.with { $0.signal = 128 }, "signal 128 with exit code 0"),
            (.with { $0.signal = -9 }, "signal -9 with exit code 0"),
            (.with { $0.signal = .max }, "signal 2147483647 with exit code 0"),
            (
                .with {
                    $0.signal = 9; $0.exitCode = 1
                }, "signal 9 with exit code 1"
            ),
        ]
        for (answer, reason) in refused {
            #expect(throws: AgentAnswerError(.waitProcess, reason)) { try answer.validate() }
        }
    }

    @Test func outputChunksAreBoundedAndEmptyOnlyAtTheEnd() throws {
        try AgentReadOutputResponse.with { $0.eof = true }.validate(.readStdout)
        try AgentReadOutputResponse.with { $0.data = Data(count: AgentReadOutputResponse.maxChunk) }.validate(.readStdout)
        #expect(throws: AgentAnswerError(.readStderr, "an empty chunk before the end of the stream")) {
            try AgentReadOutputResponse().validate(.readStderr)
        }
        #expect(throws: AgentAnswerError(.readStdout, "1048577 bytes in one chunk")) {
            try AgentReadOutputResponse.with { $0.data = Data(count: AgentReadOutputResponse.maxChunk + 1) }.validate(.readStdout)
        }
    }

    @Test func stdinCountsStayWithinWhatWasSent() throws {
        try AgentWriteStdinResponse.with { $0.written = 5 }.validate(sent: 5)
        #expect(throws: AgentAnswerError(.writeStdin, "4294967295 bytes written of 5 sent")) {
            try AgentWriteStdinResponse.with { $0.written = .max }.validate(sent: 5)
        }
    }
}
