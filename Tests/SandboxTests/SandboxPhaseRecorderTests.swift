import Sandbox
import Testing

/// The phase boundaries `Sandbox.run` reports become one duration per phase, each ending where
/// the next begins; a missing boundary is an error that says which.
struct SandboxPhaseRecorderTests {
    /// Marks every phase 10 ns apart from 1000, with kernel-boot's end at the boot marker.
    func recordedRun(markerAfterVMCreate: UInt64? = 15) -> SandboxPhaseRecorder {
        let recorder = SandboxPhaseRecorder()
        var time: UInt64 = 1000
        for phase in SandboxPhase.allCases where phase != .agentReady {
            recorder.begin(phase, at: time)
            if phase == .kernelBoot { recorder.bootMarker(elapsedSinceVMCreate: markerAfterVMCreate) }
            time += 10
        }
        recorder.finish(at: time + 5)
        return recorder
    }

    @Test func eachPhaseLastsUntilTheNextBegins() throws {
        // Begins: prepare 1000, cgroup 1010, writable 1020, vm-create 1030, kernel-boot 1040,
        // agent-ready 1030+15, process-start 1050, exit 1060, teardown 1070, end 1085.
        let durations = try recordedRun().durations()
        #expect(
            durations == [
                .prepare: 10, .cgroup: 10, .writableLayer: 10, .vmCreate: 10, .kernelBoot: 5,
                .agentReady: 5, .processStart: 10, .exit: 10, .teardown: 15,
            ])
        #expect(durations.values.reduce(0, +) == 85)
    }

    /// The agent listens before it writes the marker, so the host's connect can win the race.
    @Test func aMarkerAfterTheAnsweredConnectLeavesAgentReadyEmpty() throws {
        let recorder = SandboxPhaseRecorder()
        for (phase, time) in [
            (SandboxPhase.prepare, 0), (.cgroup, 1), (.writableLayer, 2), (.vmCreate, 3), (.kernelBoot, 4),
            (.processStart, 50), (.exit, 60), (.teardown, 70),
        ] as [(SandboxPhase, UInt64)] {
            recorder.begin(phase, at: time)
        }
        recorder.bootMarker(elapsedSinceVMCreate: 52)
        recorder.finish(at: 80)
        let durations = try recorder.durations()
        #expect(durations[.kernelBoot] == 46 && durations[.agentReady] == 0 && durations[.processStart] == 10)
    }

    @Test func noBootMarkerIsNamed() {
        #expect { try recordedRun(markerAfterVMCreate: nil).durations() } throws: { "\($0)".contains("boot marker") }
    }

    @Test func aMarkerBeforeTheVCPUsStartedIsOutOfOrder() {
        #expect { try recordedRun(markerAfterVMCreate: 5).durations() } throws: {
            "\($0)".contains("kernel-boot phase ends before it begins")
        }
    }

    @Test func anUnfinishedOrPartialRunHasNoDurations() {
        let recorder = SandboxPhaseRecorder()
        recorder.begin(.prepare, at: 1)
        #expect { try recorder.durations() } throws: { "\($0)".contains("not finished") }
        recorder.finish(at: 2)
        #expect { try recorder.durations() } throws: { "\($0)".contains("never reached its cgroup phase") }
    }
}
