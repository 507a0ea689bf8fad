import AgentCore
import AgentProtocol
import Testing
import TTRPC

struct RootfsPlanTests {
    static func layout(
        image: String = "/dev/vda", imageType: String = "erofs", upper: String = "upper", work: String = "work",
        options: [String] = ["noatime"]
    ) -> AgentRootfsLayout {
        .with {
            $0.image = .with {
                $0.path = image; $0.fsType = imageType
            }
            $0.writable = .with {
                $0.path = "/dev/vdb"; $0.fsType = "ext4"; $0.options = options
            }
            $0.upperDir = upper
            $0.workDir = work
        }
    }

    @Test func mountsImageReadOnlyThenWritableThenTheOverlay() throws {
        let plan = try RootfsPlan(containerID: "c1", layout: Self.layout(upper: "layers/upper"))
        #expect(plan.rootfs == "/run/rund/c1/rootfs")
        #expect(plan.imageMount == GuestMount(source: "/dev/vda", target: "/run/rund/c1/image", type: "erofs", flags: 1, data: nil))
        #expect(
            plan.writableMount == GuestMount(source: "/dev/vdb", target: "/run/rund/c1/writable", type: "ext4", flags: 0, data: "noatime"))
        #expect(plan.upperDirectory == "/run/rund/c1/writable/layers/upper")
        #expect(
            plan.overlayMount.data
                == "lowerdir=/run/rund/c1/image,upperdir=/run/rund/c1/writable/layers/upper,workdir=/run/rund/c1/writable/work")
    }

    @Test func rejectsLayoutsThatCouldEscapeOrInjectOptions() {
        let bad: [AgentRootfsLayout] = [
            Self.layout(image: "/etc/passwd"), Self.layout(image: "/dev/../etc/x"), Self.layout(imageType: "nfs"),
            Self.layout(upper: "../up"), Self.layout(upper: "/abs"), Self.layout(upper: "a,b"), Self.layout(upper: ""),
            Self.layout(upper: "same", work: "same"), Self.layout(options: ["ro,exec"]), Self.layout(options: [""]),
            AgentRootfsLayout(),
        ]
        for layout in bad {
            #expect(throws: TTRPCStatus.self) { try RootfsPlan(containerID: "c1", layout: layout) }
        }
    }
}
