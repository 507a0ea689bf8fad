#!/bin/sh
# Inside the rig's L1 (busybox sh), run by scripts/rig-containerd: starts Debian's containerd
# with its own root, state and socket, the rund shim and runc on its PATH, runs the command
# with ctr pointed at it, then stops containerd. Exits with the command's status.
#   containerd-in-l1.sh CMD [ARGS...]
set -u

export PATH=/usr/local/bin:/usr/local/sbin:/usr/bin:/usr/sbin:/bin:/sbin
export CONTAINERD_ADDRESS=/run/containerd-l1/containerd.sock
export CONTAINERD_NAMESPACE=default
export RUND_ROOT=/var/lib/rund-l1

mkdir -p /run/containerd-l1 /var/lib/containerd-l1 /etc/containerd-l1 /etc/rund /var/log/rund
if [ "${RIG_CRI:-0}" = 1 ]; then
    # CRI with a handler per runtime (docs/cri.md); a pod network from CNI's bridge and
    # host-local plugins (Debian's containernetworking-plugins), for pods that ask for one.
    mkdir -p /etc/cni/net.d /var/lib/cni
    cat >/etc/cni/net.d/10-rund-test.conflist <<'EOF'
{"cniVersion": "1.0.0", "name": "rund-test", "plugins": [
  {"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.88.0.0/16"}]], "routes": [{"dst": "0.0.0.0/0"}]}}]}
EOF
    cat >/etc/containerd-l1/config.toml <<'EOF'
version = 2
root = "/var/lib/containerd-l1"
state = "/run/containerd-l1/state"
[grpc]
  address = "/run/containerd-l1/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "docker.io/rundtest/pause:1"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "/etc/cni/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        NoPivotRoot = true  # L1's root is its initramfs, where pivot_root fails
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.rund]
      runtime_type = "io.containerd.rund.v2"
      privileged_without_host_devices = true
EOF
    export PYTHONPATH=/opt/cri:/opt/cri/site
    # A host-network pod gets copies of the node's hosts and resolv.conf, which L1 lacks.
    [ -e /etc/hosts ] || printf '127.0.0.1 localhost\n' >/etc/hosts
    [ -e /etc/resolv.conf ] || : >/etc/resolv.conf
else
    cat >/etc/containerd-l1/config.toml <<'EOF'
version = 2
root = "/var/lib/containerd-l1"
state = "/run/containerd-l1/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "/run/containerd-l1/containerd.sock"
EOF
fi
# rund's own options for its shim (ShimConfiguration): the state root of this L1, the agent.
cat >/etc/rund/shim.toml <<EOF
root = "$RUND_ROOT"
agent = "/usr/local/bin/rund-agent"
console_dir = "/var/log/rund"
EOF

containerd --config /etc/containerd-l1/config.toml --log-level "${CONTAINERD_LOG_LEVEL:-info}" \
    >/var/log/containerd.log 2>&1 &
containerd_pid=$!
for _ in $(seq 100); do
    [ -S "$CONTAINERD_ADDRESS" ] && ctr version >/dev/null 2>&1 && break
    sleep 0.2
done
if ! ctr version >/dev/null 2>&1; then
    echo "rig-containerd: containerd did not start; its log:" >&2
    tail -30 /var/log/containerd.log >&2
    exit 125
fi

if [ "${RIG_CRI:-0}" = 1 ]; then
    for image in /opt/cri/images/*.tar; do
        ctr -n k8s.io image import "$image" >/dev/null || { echo "rig-containerd: cannot import $image" >&2; exit 125; }
    done
fi

"$@"
status=$?

kill "$containerd_pid" 2>/dev/null
wait "$containerd_pid" 2>/dev/null
exit "$status"
