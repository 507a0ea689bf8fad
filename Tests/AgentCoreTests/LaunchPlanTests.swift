import AgentProtocol
@testable import AgentCore
import Testing
import TTRPC

struct LaunchPlanTests {
    /// A pretend filesystem for PATH lookups: only these paths are executable.
    let executables: Set<String> = ["/bin/sh", "/usr/bin/env", "/opt/tool/run"]
    func isExecutable(_ path: String) -> Bool { executables.contains(path) }

    func spec(_ args: [String], env: [String] = [], cwd: String = "") -> AgentProcessSpec {
        .with {
            $0.args = args
            $0.env = env
            $0.cwd = cwd
        }
    }

    @Test func resolvesTheProgramOnTheDefaultPath() throws {
        let plan = try LaunchPlan(spec(["sh", "-c", "true"]), isExecutable: isExecutable)
        #expect(plan.executable == "/bin/sh")
        #expect(plan.arguments == ["sh", "-c", "true"])
        #expect(plan.workingDirectory == "/")
        #expect(plan.opensStdin == false)
    }

    @Test func usesTheLastPathEntryOfTheEnvironment() throws {
        let plan = try LaunchPlan(spec(["run"], env: ["PATH=/nowhere", "A=1", "PATH=/opt/tool"]), isExecutable: isExecutable)
        #expect(plan.executable == "/opt/tool/run")
        #expect(plan.environment == ["PATH=/nowhere", "A=1", "PATH=/opt/tool"])
    }

    @Test func keepsAProgramWithASlashAsGiven() throws {
        #expect(try LaunchPlan(spec(["/usr/bin/env"]), isExecutable: isExecutable).executable == "/usr/bin/env")
        #expect(throws: TTRPCStatus.self) { try LaunchPlan(spec(["./missing"]), isExecutable: isExecutable) }
    }

    @Test func rejectsBadSpecsWithClearStatuses() {
        func status(_ spec: AgentProcessSpec) -> TTRPCStatus? {
            do {
                _ = try LaunchPlan(spec, isExecutable: isExecutable)
                return nil
            } catch {
                return error
            }
        }
        #expect(status(spec([]))?.code == .invalidArgument)
        #expect(status(spec([""]))?.code == .invalidArgument)
        #expect(status(spec(["sh"], env: ["NOEQUALS"]))?.code == .invalidArgument)
        #expect(status(spec(["sh"], env: ["=x"]))?.code == .invalidArgument)
        #expect(status(spec(["sh"], cwd: "relative"))?.code == .invalidArgument)
        #expect(status(spec(["sh", "a\u{0}b"]))?.code == .invalidArgument)
        #expect(status(spec(["nosuchprogram"]))?.code == .notFound)
        #expect(status(spec(["nosuchprogram"]))?.message.contains("not found on PATH") == true)
        var terminal = spec(["sh"])
        terminal.terminal = .with { $0.size = .with { $0.rows = 70_000 } }
        #expect(status(terminal)?.code == .invalidArgument)
    }

    @Test func mapsRlimitNamesAndChecksSoftAgainstHard() throws {
        var good = spec(["sh"])
        good.rlimits = [
            .with {
                $0.type = "RLIMIT_NOFILE"; $0.soft = 1024; $0.hard = 4096
            }
        ]
        let plan = try LaunchPlan(good, isExecutable: isExecutable)
        #expect(plan.limits == [LaunchPlan.Limit(resource: 7, soft: 1024, hard: 4096)])

        var unknown = spec(["sh"])
        unknown.rlimits = [.with { $0.type = "RLIMIT_BOGUS" }]
        #expect(throws: TTRPCStatus.self) { try LaunchPlan(unknown, isExecutable: isExecutable) }
        var inverted = spec(["sh"])
        inverted.rlimits = [
            .with {
                $0.type = "RLIMIT_NOFILE"; $0.soft = 10; $0.hard = 5
            }
        ]
        #expect(throws: TTRPCStatus.self) { try LaunchPlan(inverted, isExecutable: isExecutable) }
    }

    @Test func validatesIDs() {
        #expect(GuestAgent.isValidID("web-1.a_b"))
        #expect(!GuestAgent.isValidID(""))
        #expect(!GuestAgent.isValidID("a/b"))
        #expect(!GuestAgent.isValidID(String(repeating: "x", count: 65)))
    }
}
