import AgentProtocol
import HostOS
@testable import Shim
import Testing

/// config.json as ctr writes it (containerd 1.6's default spec plus ctr's process), and what
/// rund makes of it or refuses.
struct BundleSpecTests {
    static func config(process: String = ctrProcess, mounts: String = defaultMounts, extra: String = "") -> [UInt8] {
        Array(
            """
            {"ociVersion":"1.0.2-dev","process":\(process),"root":{"path":"rootfs"},"hostname":"fn-host",
             "mounts":\(mounts),"annotations":{"io.kubernetes.cri.sandbox-id":"pod1","foo":"bar"},
             "linux":{"resources":{"devices":[{"allow":false,"access":"rwm"}],"memory":{"limit":536870912},
                      "cpu":{"quota":150000,"period":100000,"shares":512}},
                      "cgroupsPath":"/default/t1","namespaces":[{"type":"pid"},{"type":"network"}]}\(extra)}
            """.utf8)
    }

    static let ctrProcess = """
        {"terminal":true,"consoleSize":{"height":40,"width":120},"user":{"uid":1000,"gid":100,"additionalGids":[100,27]},
         "args":["sh","-c","echo hi; exit 3"],"env":["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin","TERM=xterm"],
         "cwd":"/work","capabilities":{"bounding":["CAP_CHOWN"]},
         "rlimits":[{"type":"RLIMIT_NOFILE","hard":1024,"soft":512}],"noNewPrivileges":true}
        """

    static let defaultMounts = """
        [{"destination":"/proc","type":"proc","source":"proc","options":["nosuid","noexec","nodev"]},
         {"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]},
         {"destination":"/dev/pts","type":"devpts","source":"devpts","options":["nosuid","noexec","newinstance"]},
         {"destination":"/dev/shm","type":"tmpfs","source":"shm","options":["nosuid","noexec","nodev","mode=1777"]},
         {"destination":"/dev/mqueue","type":"mqueue","source":"mqueue","options":["nosuid","noexec","nodev"]},
         {"destination":"/sys","type":"sysfs","source":"sysfs","options":["nosuid","noexec","nodev","ro"]},
         {"destination":"/run","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755"]}]
        """

    @Test func ctrsSpecBecomesTheProcessHostnameAndSize() throws {
        let plan = try BundleSpec.plan(configJSON: Self.config())
        #expect(plan.process.args == ["sh", "-c", "echo hi; exit 3"])
        #expect(plan.process.env.last == "TERM=xterm")
        #expect(plan.process.cwd == "/work")
        #expect(plan.process.user.uid == 1000 && plan.process.user.gid == 100 && plan.process.user.additionalGids == [100, 27])
        #expect(plan.process.rlimits.map(\.type) == ["RLIMIT_NOFILE"] && plan.process.rlimits.first?.soft == 512)
        #expect(plan.terminalSize == WindowSize(rows: 40, columns: 120))
        #expect(plan.hostname == "fn-host")
        #expect(plan.annotations["foo"] == "bar")
        // 512 MiB of memory is the VM's RAM; 1.5 CPUs of quota are 2 vCPUs, the quota itself the cgroup's.
        #expect(plan.memoryMiB == 512 && plan.vcpus == 2)
        #expect(plan.cpuQuotaMicros == 150_000 && plan.cpuPeriodMicros == 100_000)
    }

    @Test func aHostBindMountIsRefusedNotDropped() {
        let mounts =
            String(Self.defaultMounts.dropLast())
            + #",{"destination":"/data","type":"bind","source":"/srv/data","options":["rbind","ro"]}]"#
        #expect { try BundleSpec.plan(configJSON: Self.config(mounts: mounts)) } throws: { error in
            let shim = error as? ShimError
            return shim?.code == .failedPrecondition && shim?.description.contains("/data (bind from /srv/data)") == true
        }
        let untyped = String(Self.defaultMounts.dropLast()) + #",{"destination":"/etc/hosts","source":"/tmp/hosts","options":["rbind"]}]"#
        #expect(throws: ShimError.self) { try BundleSpec.plan(configJSON: Self.config(mounts: untyped)) }
    }

    @Test func malformedSpecsAreOneLineErrors() {
        #expect { try BundleSpec.plan(configJSON: Array("{".utf8)) } throws: {
            "\($0)".hasPrefix("config.json is not a valid OCI runtime spec")
        }
        #expect { try BundleSpec.plan(configJSON: Self.config(process: #"{"args":"sh","cwd":"/"}"#)) } throws: {
            "\($0)".contains("process.args")
        }
        #expect { try BundleSpec.plan(configJSON: Self.config(process: #"{"args":[],"cwd":"/"}"#)) } throws: { "\($0)".contains("no args") }
        #expect { try BundleSpec.plan(configJSON: Self.config(process: #"{"args":["x"],"cwd":"rel"}"#)) } throws: {
            "\($0)".contains("not absolute")
        }
        #expect { try BundleSpec.plan(configJSON: Self.config(process: #"{"args":["x"],"user":{"uid":-1}}"#)) } throws: { _ in true }
        #expect { try BundleSpec.plan(configJSON: Self.config(extra: #","hostname":"bad host"#)) } throws: { _ in true }
    }

    @Test func aTinyMemoryLimitIsRefused() {
        let config = String(decoding: Self.config(), as: UTF8.self).replacing("536870912", with: "1048576")
        #expect { try BundleSpec.plan(configJSON: Array(config.utf8)) } throws: { "\($0)".contains("below the 64 MiB") }
    }

    @Test func anExecsProcessIsOCIJSON() throws {
        let json =
            #"{"user":{"uid":0,"gid":0,"additionalGids":[0]},"args":["sh","-c","echo from-exec; exit 7"],"env":["PATH=/bin"],"cwd":"/","capabilities":{}}"#
        let (spec, size) = try BundleSpec.execProcess(json: Array(json.utf8))
        #expect(spec.args == ["sh", "-c", "echo from-exec; exit 7"] && spec.env == ["PATH=/bin"] && spec.cwd == "/")
        #expect(size == nil)
        #expect(throws: ShimError.self) { try BundleSpec.execProcess(json: Array("[]".utf8)) }
    }
}

/// Values from a hostile or careless client never trap: extreme quotas and periods.
struct ResourceEdgeTests {
    @Test func extremeCPUValuesAreBoundedOrRefused() throws {
        for (quota, period) in [(Int64.max, UInt64(1)), (Int64.max, UInt64.max), (1, UInt64(Int64.max)), (Int64.max - 1, UInt64(2))] {
            let config = String(decoding: BundleSpecTests.config(), as: UTF8.self)
                .replacing(#""quota":150000,"period":100000"#, with: #""quota":\#(quota),"period":\#(period)"#)
            let plan = try BundleSpec.plan(configJSON: Array(config.utf8))
            #expect((plan.vcpus ?? 0) >= 1)
        }
        let zero = String(decoding: BundleSpecTests.config(), as: UTF8.self).replacing(#""period":100000"#, with: #""period":0"#)
        #expect(throws: ShimError.self) { try BundleSpec.plan(configJSON: Array(zero.utf8)) }
    }
}

/// A CRI pod's config.json (annotations, a member's limits, CRI's binds, a pod network) and
/// the VM a pod gets.
struct PodBundleSpecTests {
    static func podConfig(
        type: String?, memory: Int64 = 33_554_432, mounts: String = BundleSpecTests.defaultMounts, namespaces: String = "[]"
    ) -> [UInt8] {
        let annotations = type.map { #"{"io.kubernetes.cri.container-type":"\#($0)","io.kubernetes.cri.sandbox-id":"pod1"}"# } ?? "{}"
        return Array(
            """
            {"process":{"args":["/pause"],"cwd":"/"},"mounts":\(mounts),"annotations":\(annotations),
             "linux":{"resources":{"memory":{"limit":\(memory)}},"namespaces":\(namespaces)}}
            """.utf8)
    }

    static let criFileMounts =
        BundleSpecTests.defaultMounts.dropLast() + """
            ,{"destination":"/etc/hosts","type":"bind","source":"/var/lib/containerd/sandboxes/x/hosts","options":["rbind","rw"]},
             {"destination":"/etc/resolv.conf","type":"bind","source":"/var/lib/containerd/sandboxes/x/resolv.conf","options":["rbind"]},
             {"destination":"/dev/termination-log","type":"bind","source":"/var/lib/containerd/c/x","options":["rbind"]}]
            """

    @Test func criAnnotationsNameThePodRole() throws {
        #expect(try BundleSpec.plan(configJSON: Self.podConfig(type: "sandbox", memory: 0)).podRole == .podSandbox)
        #expect(try BundleSpec.plan(configJSON: Self.podConfig(type: "container")).podRole == .podMember(sandboxID: "pod1"))
        #expect(try BundleSpec.plan(configJSON: Self.podConfig(type: nil, memory: 0)).podRole == .single)
        #expect(try BundleSpec.plan(configJSON: BundleSpecTests.config()).podRole == .single)
    }

    @Test func aPodMembersMemoryLimitIsItsCgroupsNotAVMSize() throws {
        let plan = try BundleSpec.plan(configJSON: Self.podConfig(type: "container"))
        #expect(plan.memoryLimitBytes == 33_554_432)
        #expect(plan.memoryMiB == nil)
        // The same 32 MiB cannot size a VM.
        #expect(throws: ShimError.self) { try BundleSpec.plan(configJSON: Self.podConfig(type: "sandbox")) }
    }

    @Test func criBindsOfPodFilesAreLeftOutForPodsOnly() throws {
        #expect(throws: Never.self) {
            try BundleSpec.plan(configJSON: Self.podConfig(type: "container", mounts: String(Self.criFileMounts)))
        }
        #expect(throws: ShimError.self) {
            try BundleSpec.plan(configJSON: Self.podConfig(type: nil, memory: 0, mounts: String(Self.criFileMounts)))
        }
    }

    @Test func aPodNetworkIsTheVMsAndAPodMembersNamespacesAreIgnored() throws {
        let pinned = #"[{"type":"network","path":"/var/run/netns/cni-1234"}]"#
        let plan = try BundleSpec.plan(configJSON: Self.podConfig(type: "sandbox", memory: 0, namespaces: pinned))
        #expect(plan.networkNamespace == "/var/run/netns/cni-1234")
        let relative = #"[{"type":"network","path":"netns/cni-1234"}]"#
        #expect(throws: ShimError.self) {
            try BundleSpec.plan(configJSON: Self.podConfig(type: "sandbox", memory: 0, namespaces: relative))
        }
        // A later container names the sandbox's namespaces by /proc paths: those are the VM's.
        let joined = #"[{"type":"network","path":"/proc/42/ns/net"},{"type":"ipc","path":"/proc/42/ns/ipc"}]"#
        #expect(try BundleSpec.plan(configJSON: Self.podConfig(type: "container", namespaces: joined)).networkNamespace == nil)
    }

    @Test func aPodsVMIsItsContainersSumPlusTheOverhead() throws {
        var configuration = ShimConfiguration(root: "/r", agent: "/a")
        configuration.podOverheadMiB = 64
        var plan = try BundleSpec.plan(configJSON: Self.podConfig(type: "sandbox", memory: 0))
        #expect(PodSizing(plan: plan, configuration: configuration) == PodSizing(memoryMiB: 256, vcpus: 1))
        plan.annotations["io.kubernetes.cri.sandbox-memory"] = "\(192 << 20)"
        plan.annotations["io.kubernetes.cri.sandbox-cpu-quota"] = "150000"
        plan.annotations["io.kubernetes.cri.sandbox-cpu-period"] = "100000"
        #expect(PodSizing(plan: plan, configuration: configuration) == PodSizing(memoryMiB: 256, vcpus: 2))
        // A single container's VM keeps config.json's size whatever the annotations say.
        let single = try BundleSpec.plan(configJSON: BundleSpecTests.config())
        #expect(PodSizing(plan: single, configuration: configuration) == PodSizing(memoryMiB: 512, vcpus: 2))
    }
}
