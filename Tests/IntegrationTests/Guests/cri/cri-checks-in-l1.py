"""Kubernetes pods through containerd's CRI plugin, inside the rig's L1: run by CRIInRigTests
through `scripts/rig-containerd --cri` (containerd with CRI is up; the pause, busybox and other
images are in namespace k8s.io). Speaks CRI over gRPC with the client generated from
runtime_v1.proto. Prints one line per check, `CHECK <name> PASS|FAIL <details>`, and with
--bench N the pod start (RunPodSandbox, CreateContainer and StartContainer to the container's
first line in its CRI log) and teardown (StopPodSandbox and RemovePodSandbox) times of N pods per
runtime handler, alternating neither: all rund pods, then all runc pods.
"""

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.parse

import grpc
import runtime_v1_pb2 as cri
import runtime_v1_pb2_grpc as cri_grpc

SOCKET = "unix://" + os.environ.get("CONTAINERD_ADDRESS", "/run/containerd-l1/containerd.sock")
BUSYBOX = "docker.io/rundtest/busybox:1"
OTHER = "docker.io/rundtest/other:1"
LOGS = "/var/log/pods"

runtime = cri_grpc.RuntimeServiceStub(grpc.insecure_channel(SOCKET))


def step(text):
    """Where the checks are, on stderr with L1's uptime: a hang shows in the rig's stderr tail."""
    uptime = open("/proc/uptime").read().split()[0]
    print(f"cri-checks: {uptime}s {text}", file=sys.stderr, flush=True)


def check(name, ok, details=""):
    flat = str(details).replace("\n", "|")[:700]
    print(f"CHECK {name} {'PASS' if ok else 'FAIL'} {flat}", flush=True)


def pod_config(name, network=cri.NODE, **resources):
    config = cri.PodSandboxConfig(
        metadata=cri.PodSandboxMetadata(name=name, uid=name + "-uid", namespace="default"),
        log_directory=f"{LOGS}/{name}",
        linux=cri.LinuxPodSandboxConfig(
            security_context=cri.LinuxSandboxSecurityContext(
                namespace_options=cri.NamespaceOption(network=network, pid=cri.CONTAINER, ipc=cri.POD))))
    if resources:
        config.linux.resources.CopyFrom(cri.LinuxContainerResources(**resources))
    os.makedirs(config.log_directory, exist_ok=True)
    return config


def run_pod(name, handler, timeout=600, network=cri.NODE, **resources):
    config = pod_config(name, network, **resources)
    response = runtime.RunPodSandbox(cri.RunPodSandboxRequest(config=config, runtime_handler=handler), timeout=timeout)
    return response.pod_sandbox_id, config


def create(pod_id, config, name, image, script, memory=0, timeout=300):
    container = cri.ContainerConfig(
        metadata=cri.ContainerMetadata(name=name),
        image=cri.ImageSpec(image=image),
        command=["sh", "-c", script],
        log_path=f"{name}.log",
        linux=cri.LinuxContainerConfig(resources=cri.LinuxContainerResources(memory_limit_in_bytes=memory)))
    request = cri.CreateContainerRequest(pod_sandbox_id=pod_id, config=container, sandbox_config=config)
    container_id = runtime.CreateContainer(request, timeout=timeout).container_id
    runtime.StartContainer(cri.StartContainerRequest(container_id=container_id), timeout=timeout)
    return container_id


def exec_sync(container_id, *argv, timeout=120):
    response = runtime.ExecSync(cri.ExecSyncRequest(container_id=container_id, cmd=list(argv), timeout=60), timeout=timeout)
    return response.stdout.decode(errors="replace").strip(), response.stderr.decode(errors="replace").strip(), response.exit_code


def status(container_id):
    return runtime.ContainerStatus(cri.ContainerStatusRequest(container_id=container_id), timeout=60).status


def wait_exited(container_id, seconds=120):
    deadline = time.time() + seconds
    while time.time() < deadline:
        current = status(container_id)
        if current.state == cri.CONTAINER_EXITED:
            return current
        time.sleep(0.5)
    return status(container_id)


def wait_for_output(path, text, seconds=60):
    deadline = time.time() + seconds
    while time.time() < deadline:
        if os.path.exists(path) and text in open(path, errors="replace").read():
            return True
        time.sleep(0.5)
    return False


class StreamingExec:
    """CRI's Exec streaming endpoint over WebSocket with the v4.channel.k8s.io protocol (what
    kubectl exec speaks to a kubelet): each binary message is a channel byte (1 stdout, 2 stderr,
    3 the exit status as a JSON Status, 4 a terminal resize) and its data."""

    def __init__(self, url, seconds=120):
        parsed = urllib.parse.urlparse(url)
        self.socket = socket.create_connection((parsed.hostname, parsed.port), timeout=seconds)
        self.reader = self.socket.makefile("rb")
        key = base64.b64encode(os.urandom(16)).decode()
        path = parsed.path + (f"?{parsed.query}" if parsed.query else "")
        self.socket.sendall(
            (f"GET {path} HTTP/1.1\r\nHost: {parsed.netloc}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n").encode())
        status = self.reader.readline()
        while self.reader.readline() not in (b"\r\n", b""):
            pass
        if b" 101 " not in status:
            raise RuntimeError(f"the streaming server refused the upgrade: {status!r}")

    def send(self, channel, data):
        payload = bytes([channel]) + data
        mask = os.urandom(4)
        length = len(payload)
        header = bytes([0x82]) + (bytes([0x80 | length]) if length < 126 else bytes([0x80 | 126]) + length.to_bytes(2, "big"))
        self.socket.sendall(header + mask + bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload)))

    def receive(self):
        """The next (channel, data), or None once the server closed the stream."""
        while True:
            head = self.reader.read(2)
            if len(head) < 2:
                return None
            opcode, length = head[0] & 0x0F, head[1] & 0x7F
            if length == 126:
                length = int.from_bytes(self.reader.read(2), "big")
            elif length == 127:
                length = int.from_bytes(self.reader.read(8), "big")
            payload = self.reader.read(length)
            if opcode == 8:
                return None
            if opcode in (1, 2) and payload:
                return payload[0], payload[1:]

    def run(self, resize=None, stdin=b""):
        """Sends a resize (channel 4) and stdin (channel 0, left open: with a terminal its end
        would end the session), then collects stdout and the exit status to the end."""
        if resize:
            self.send(4, json.dumps({"Width": resize[1], "Height": resize[0]}).encode())
        if stdin:
            self.send(0, stdin)
        output, exit_code, status = b"", None, None
        while (message := self.receive()) is not None:
            channel, data = message
            if channel == 1:
                output += data
            elif channel == 3 and data:
                status = json.loads(data)
                if status.get("status") == "Success":
                    exit_code = 0
                else:
                    causes = status.get("details", {}).get("causes", [])
                    exit_code = next((int(cause["message"]) for cause in causes if cause.get("reason") == "ExitCode"), -1)
        self.socket.close()
        return output.decode(errors="replace"), exit_code, status


def teardown(pod_id):
    runtime.StopPodSandbox(cri.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=300)
    runtime.RemovePodSandbox(cri.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=300)


def guarded(name, body):
    """Runs one check; an exception is that check's failure, not the end of the others."""
    try:
        body()
    except Exception as error:  # noqa: BLE001 - any failure is reported as the check's
        check(name, False, f"{type(error).__name__}: {error}")


def shims():
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = open(f"/proc/{entry}/cmdline", "rb").read().split(b"\0")
            except OSError:
                continue
            if argv and argv[0].endswith(b"containerd-shim-rund-v2"):
                found.append(entry)
    return found


L1_BOOT_ID = open("/proc/sys/kernel/random/boot_id").read().strip()
state = {}


def version():
    response = runtime.Version(cri.VersionRequest(), timeout=60)
    check("version", response.runtime_api_version.startswith("v1"), f"{response.runtime_name} {response.runtime_version} {response.runtime_api_version}")


def pool_used_kib():
    """Space used in rund's writable-layer pool (XFS), where every container's layer lives."""
    try:
        fs = os.statvfs("/var/lib/rund-l1/writable")
    except OSError:
        return None
    return (fs.f_blocks - fs.f_bfree) * fs.f_frsize // 1024


def two_containers():
    step("pod with two containers")
    pod_id, config = run_pod("pod-a", "rund", memory_limit_in_bytes=256 << 20)
    # With the pod's VM up (its pause container's layer in the pool), before any other layer.
    state["pool"] = pool_used_kib()
    state["pod"], state["config"] = pod_id, config
    first = create(pod_id, config, "first", BUSYBOX, "echo first-started; echo one > /tmp/mine; exec sleep 100000")
    second = create(pod_id, config, "second", OTHER, "echo second-started; echo two > /tmp/mine; exec sleep 100000", memory=64 << 20)
    state["first"], state["second"] = first, second
    logs = [wait_for_output(f"{config.log_directory}/{name}.log", f"{name}-started") for name in ("first", "second")]
    views = {}
    for name, container_id in (("first", first), ("second", second)):
        out, err, code = exec_sync(container_id, "sh", "-c", "cat /proc/sys/kernel/random/boot_id; cat /tmp/mine; ls /opt 2>/dev/null | wc -l")
        views[name] = out.split("\n") + [f"exit={code}", err]
    one_vm = views["first"][0] == views["second"][0] != L1_BOOT_ID
    own = views["first"][1] == "one" and views["second"][1] == "two"
    images = views["first"][2] == "0" and views["second"][2] == "1"
    check("pod-two-containers", one_vm and own and images and all(logs), f"views={views} l1={L1_BOOT_ID} logs={logs}")


def exec_status():
    out, err, code = exec_sync(state["second"], "sh", "-c", "echo to-stdout; echo to-stderr >&2; exit 7")
    check("exec-sync", (out, err, code) == ("to-stdout", "to-stderr", 7), f"out={out!r} err={err!r} code={code}")


def stats():
    per_container = {}
    for name in ("first", "second"):
        response = runtime.ContainerStats(cri.ContainerStatsRequest(container_id=state[name]), timeout=60)
        per_container[name] = response.stats.memory.working_set_bytes.value or response.stats.memory.usage_bytes.value
    listed = runtime.ListContainerStats(cri.ListContainerStatsRequest(filter=cri.ContainerStatsFilter(pod_sandbox_id=state["pod"])), timeout=60)
    ids = {entry.attributes.id for entry in listed.stats}
    ok = all(value > 0 for value in per_container.values()) and {state["first"], state["second"]} <= ids
    check("container-stats", ok, f"memory={per_container} listed={len(ids)}")


def exec_terminal():
    step("exec with a terminal")
    # As `kubectl exec -it`: stdin and a terminal; the line typed is echoed by the terminal.
    # The resize and the typed line reach the guest by different paths (ResizePty, the stdin
    # FIFO), in either order: the script waits up to 10 s for the size rather than assume one.
    script = ("read line; i=0; while [ \"$(stty size)\" != '33 77' ] && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done; "
              "stty size; tty; echo \"got $line\"; exit 5")
    request = cri.ExecRequest(container_id=state["first"], cmd=["sh", "-c", script], tty=True, stdin=True, stdout=True)
    url = runtime.Exec(request, timeout=60).url
    output, code, final = StreamingExec(url).run(resize=(33, 77), stdin=b"typed\n")
    lines = [line.strip() for line in output.replace("\r", "").split("\n") if line.strip()]
    ok = code == 5 and "33 77" in lines and "got typed" in lines and any(line.startswith("/dev/pts/") for line in lines)
    check("exec-terminal", ok, f"exit={code} output={lines} status={final}")


def exit_code():
    step("exit 3")
    container_id = create(state["pod"], state["config"], "three", BUSYBOX, "echo exiting; exit 3")
    final = wait_exited(container_id)
    check("exit-code", final.state == cri.CONTAINER_EXITED and final.exit_code == 3, f"state={final.state} exit={final.exit_code} reason={final.reason}")
    runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id), timeout=120)


def oom_killed():
    step("OOM")
    # dd's 48 MiB buffer, filled, in a container limited to 16 MiB.
    container_id = create(state["pod"], state["config"], "hungry", BUSYBOX, "exec dd if=/dev/zero of=/dev/null bs=48M count=1", memory=16 << 20)
    final = wait_exited(container_id)
    check("oom-killed", final.reason == "OOMKilled" and final.exit_code == 137, f"state={final.state} exit={final.exit_code} reason={final.reason}")
    runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=container_id), timeout=120)


def update_resources():
    step("update resources")
    # 24 MiB fits the container's 64 MiB, not the 16 MiB it is updated to.
    script = "dd if=/dev/zero of=/dev/null bs=24M count=1 2>/dev/null && echo allocated"
    before = exec_sync(state["second"], "sh", "-c", script)
    runtime.UpdateContainerResources(
        cri.UpdateContainerResourcesRequest(container_id=state["second"], linux=cri.LinuxContainerResources(memory_limit_in_bytes=16 << 20)),
        timeout=60)
    after = exec_sync(state["second"], "sh", "-c", script)
    check("update-resources", before[2] == 0 and after[2] == 137, f"before={before} after={after}")


def remove_one():
    step("remove one container")
    runtime.StopContainer(cri.StopContainerRequest(container_id=state["second"], timeout=5), timeout=120)
    runtime.RemoveContainer(cri.RemoveContainerRequest(container_id=state["second"]), timeout=120)
    out, _, code = exec_sync(state["first"], "cat", "/tmp/mine")
    first = status(state["first"])
    check("remove-one-keeps-other", out == "one" and code == 0 and first.state == cri.CONTAINER_RUNNING, f"out={out!r} code={code} state={first.state}")


def pod_teardown():
    step("stop and remove the pod")
    teardown(state["pod"])
    time.sleep(2)
    left = shims()
    gc = subprocess.run([os.environ.get("RUND", "rund"), "gc", "--dry-run", "--json"], capture_output=True, text=True)
    report = json.loads(gc.stdout or "{}")
    in_use = report.get("cgroups", {}).get("inUse", report.get("inUse", []))
    sockets = os.listdir("/run/containerd/s") if os.path.isdir("/run/containerd/s") else []
    # rund's writable-layer pool stays mounted; no image or layer chain may.
    mounts = [line for line in open("/proc/mounts") if " erofs " in line or ("/var/lib/rund-l1" in line and "/writable " not in line)]
    # Every layer of the pod is freed: the pool uses no more than with the pause container's alone.
    pool_before, pool_after = state.get("pool"), pool_used_kib()
    pool_back = pool_before is not None and pool_after is not None and pool_after <= pool_before + 1024
    ok = not left and not in_use and not sockets and not mounts and pool_back
    check("pod-teardown-leaves-nothing", ok,
          f"shims={left} cgroups-in-use={in_use} sockets={sockets} mounts={mounts} pool-kib={pool_before}->{pool_after} gc={gc.stdout[:300]}")


def pod_network():
    """A pod on containerd's CNI network (bridge cni0, host-local 10.88.0.0/16): the guest takes
    over the pod's interface, reaches L1's HTTP server on the bridge's address, and has the
    address CRI reports for the pod."""
    step("pod on the CNI network")
    www = "/tmp/cri-www"
    os.makedirs(www, exist_ok=True)
    with open(f"{www}/page.txt", "w") as page:
        page.write("page-from-l1-over-cni\n")
    server = subprocess.Popen(["busybox", "httpd", "-f", "-p", "8080", "-h", www])
    try:
        pod_id, config = run_pod("pod-net", "rund", network=cri.POD)
        pod_ip = runtime.PodSandboxStatus(cri.PodSandboxStatusRequest(pod_sandbox_id=pod_id), timeout=60).status.network.ip
        script = ("echo address=$(busybox ip -4 -o addr show eth0 | busybox awk '{ print $4 }'); "
                  "busybox wget -q -O- http://10.88.0.1:8080/page.txt; echo fetch=$?")
        container = create(pod_id, config, "fetch", BUSYBOX, script)
        final = wait_exited(container)
        log = open(f"{config.log_directory}/fetch.log", errors="replace").read()
        teardown(pod_id)
        taps = subprocess.run(["sh", "-c", "ls /sys/class/net | grep -c tap || true"], capture_output=True, text=True).stdout.strip()
        ok = (final.exit_code == 0 and "page-from-l1-over-cni" in log and "fetch=0" in log
              and pod_ip.startswith("10.88.") and f"address={pod_ip}/16" in log and taps == "0")
        check("pod-network", ok, f"pod-ip={pod_ip} exit={final.exit_code} taps-left={taps} log={log[-400:]}")
    finally:
        server.kill()
        server.wait()


def runc_peer():
    step("the same pod with runc")
    pod_id, config = run_pod("pod-runc", "runc")
    first = create(pod_id, config, "first", BUSYBOX, "echo one > /tmp/mine; exec sleep 100000")
    second = create(pod_id, config, "second", OTHER, "echo two > /tmp/mine; exec sleep 100000")
    outs = [exec_sync(container_id, "sh", "-c", "cat /proc/sys/kernel/random/boot_id; cat /tmp/mine") for container_id in (first, second)]
    teardown(pod_id)
    boot_ids = {out[0].split("\n")[0] for out in outs}
    check("runc-peer", boot_ids == {L1_BOOT_ID} and [out[0].split("\n")[1] for out in outs] == ["one", "two"], f"outs={outs}")


def bench(count):
    """Pod start (RunPodSandbox to the container's first output in its log) and teardown."""
    results = {}
    for handler in ("rund", "runc"):
        starts, teardowns = [], []
        for index in range(count):
            name = f"bench-{handler}-{index}"
            began = time.monotonic()
            pod_id, config = run_pod(name, handler)
            create(pod_id, config, "fn", BUSYBOX, "echo ready; exec sleep 100000")
            if not wait_for_output(f"{config.log_directory}/fn.log", "ready", seconds=300):
                raise RuntimeError(f"{name}: no output")
            started = time.monotonic()
            teardown(pod_id)
            starts.append((started - began) * 1000)
            teardowns.append((time.monotonic() - started) * 1000)
        results[handler] = {"start_ms": starts, "teardown_ms": teardowns}
    print("BENCH " + json.dumps(results), flush=True)

    def percentile(values, fraction):
        ordered = sorted(values)
        return ordered[min(len(ordered) - 1, int(round(fraction * (len(ordered) - 1))))]

    print(f"{count} pods per handler, one container each (busybox), in this L1; milliseconds")
    print(f"{'handler':8} {'start p50':>10} {'start p99':>10} {'teardown p50':>13} {'teardown p99':>13}")
    for handler, figures in results.items():
        print(f"{handler:8} {percentile(figures['start_ms'], 0.5):10.0f} {percentile(figures['start_ms'], 0.99):10.0f}"
              f" {percentile(figures['teardown_ms'], 0.5):13.0f} {percentile(figures['teardown_ms'], 0.99):13.0f}")
    for key, label in (("start_ms", "start"), ("teardown_ms", "teardown")):
        ratio = percentile(results["rund"][key], 0.5) / percentile(results["runc"][key], 0.5)
        print(f"ratio rund/runc, {label} p50: {ratio:.2f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--bench":
        bench(int(sys.argv[2]))
        sys.exit(0)
    for name, body in [
        ("version", version), ("pod-two-containers", two_containers), ("exec-sync", exec_status),
        ("container-stats", stats), ("exec-terminal", exec_terminal), ("exit-code", exit_code), ("oom-killed", oom_killed),
        ("update-resources", update_resources), ("remove-one-keeps-other", remove_one),
        ("pod-teardown-leaves-nothing", pod_teardown), ("pod-network", pod_network), ("runc-peer", runc_peer),
    ]:
        guarded(name, body)
    log = open("/var/log/containerd.log", errors="replace").readlines()
    # A guest the emulator crashed or stalled, as the shim logged it: a failed check may show only
    # its consequence, and this tells the harness that boot may be the emulator's fault.
    for line in log:
        if "triple fault on vCPU" in line or "guest made no progress" in line:
            print("EMULATOR-FAULT containerd.log: " + line.strip()[:300])
    print("--- containerd log tail")
    print("".join(log[-25:]))
