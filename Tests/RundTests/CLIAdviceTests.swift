import Cgroups
@testable import Sandbox
import Storage
import Network
import Testing
@testable import rund

/// The libraries state what went wrong; the CLI alone adds which of its options to change.
struct CLIAdviceTests {
    @Test func exactlyOneRootIsAccepted() throws {
        #expect(try RunCommand.root(image: "busybox", rootfs: nil) == .image("busybox"))
        #expect(try RunCommand.root(image: nil, rootfs: "/srv/tree") == .directory("/srv/tree"))
        #expect { try RunCommand.root(image: "busybox", rootfs: "/srv/tree") } throws: { "\($0)".contains("not both") }
        #expect { try RunCommand.root(image: nil, rootfs: nil) } throws: { "\($0)".contains("--image REF") }
    }

    @Test func sandboxErrorsGetTheOptionThatHelps() {
        let cases: [(SandboxError.Kind, String)] = [
            (.agentUnresponsive, "--console FILE"), (.agentMissing, "--agent"), (.noCommand, "after --"),
            (.cannotConfine, "--unconfined"), (.kernelCacheBroken, "scripts/setup"),
        ]
        for (kind, option) in cases {
            let line = CLIAdvice.line(for: SandboxError(kind, "what failed"))
            #expect(line.hasPrefix("rund: ") && line.contains("what failed; ") && line.contains(option), "\(kind): \(line)")
        }
        #expect(CLIAdvice.line(for: SandboxError("plain")) == "rund: plain")
        #expect(CLIAdvice.line(for: StorageError(.registryTimedOut, "r did not answer")).hasSuffix("raise --timeout"))
        #expect(CLIAdvice.line(for: StorageError(.notInStore, "no image 'x' in the store")).hasSuffix("see `rund image ls`"))
        #expect(CLIAdvice.line(for: StorageError(.hostUnsupported, "cannot reflink")).hasSuffix("run `rund doctor`"))
        #expect(CLIAdvice.line(for: CgroupError(.noHierarchy, "no cgroup hierarchy to use")).hasSuffix("see `rund doctor`"))
        #expect(
            CLIAdvice.line(for: NetworkError("ip netns add rund-n0: Operation not permitted"))
                == "rund: ip netns add rund-n0: Operation not permitted; see `rund doctor` (networks), or run with --network none")
    }

    @Test func librariesSayNothingAboutOptions() throws {
        let spec = SandboxSpec(id: "s", root: .directory("/srv/tree"))
        #expect { try spec.processSpec(config: .init()) } throws: { !"\($0)".contains("--") }
        let killed = SandboxExit(processStatus: 137, oomKilled: true)
        #expect(killed.outOfMemoryMessage(memoryMiB: 64)?.contains("--") == false)
    }
}
