# Shared helpers for scripts/setup and scripts/rig (sourced, not executed).

# The program name used in error messages; each script sets it before sourcing.
: "${PROG:=rund}"

die() {
    printf '%s: %s\n' "$PROG" "$*" >&2
    exit "${DIE_STATUS:-1}"
}

note() {
    printf '%s: %s\n' "$PROG" "$*" >&2
}

# The state root: --root wins, then $RUND_ROOT, then /var/lib/rund (same rule as StateRoot.resolve).
state_root() {
    local explicit=$1
    if [[ -n $explicit ]]; then
        printf '%s\n' "$explicit"
    elif [[ -n ${RUND_ROOT:-} ]]; then
        printf '%s\n' "$RUND_ROOT"
    else
        printf '%s\n' /var/lib/rund
    fi
}

# The guest kernel cache layout written by scripts/setup and scripts/build-guest-kernel (a
# contract with the Swift code, GuestKernel):
#   $ROOT/kernel/<version>/{vmlinuz,config,System.map?,version,modules/}
#   $ROOT/kernel/current -> <version>      Debian's stock kernel (also L1's kernel in the rig)
#   $ROOT/kernel/guest -> rund-<...>        rund's own, when built (sandboxes prefer it)
kernel_cache_dir() {
    printf '%s/kernel\n' "$1"
}

# `--put` arguments for scripts/rig that carry ROOT's guest kernels into L1 under L1_ROOT:
# the stock kernel always (dies when it is not cached), rund's own when built. One per line.
guest_kernel_puts() {
    local root=$1 l1_root=$2 stock guest mkfs
    stock=$(readlink -f "$root/kernel/current") || true
    [[ -f $stock/vmlinuz ]] || die "no guest kernel cached under $root/kernel: run scripts/setup"
    printf '%s\n' --put "$stock:$l1_root/kernel/current"
    guest=$(readlink -f "$root/kernel/guest") || true
    if [[ -f $guest/vmlinuz ]]; then
        printf '%s\n' --put "$guest:$l1_root/kernel/guest"
        # With rund's kernel a pmem sandbox boots from the agent's EROFS image, which rund
        # builds in L1 on first use (Sandbox/GuestAgentImage).
        mkfs=$(command -v mkfs.erofs) || die "mkfs.erofs is missing: run scripts/setup"
        printf '%s\n' --put "$mkfs"
    fi
}

# The rund binary scripts ask what rund knows (e.g. `rund vm modules`): $RUND_BIN, else the
# repository's debug build, built first when missing. Callers set HERE to the scripts directory.
rund_binary() {
    if [[ -n ${RUND_BIN:-} ]]; then
        printf '%s\n' "$RUND_BIN"
        return
    fi
    local repo
    repo=$(cd "$HERE/.." && pwd)
    if [[ ! -x $repo/.build/debug/rund ]]; then
        (cd "$repo" && swift build --product rund >&2) || die "swift build --product rund failed"
    fi
    printf '%s\n' "$repo/.build/debug/rund"
}

# Module files (relative to KERNEL_DIR/modules) for the named modules and their dependencies, in
# load order, one per line; built-in modules print nothing. rund works it out (KernelModules),
# the one place that reads modules.dep.
module_load_order() {
    local kernel_dir=$1
    shift
    "$(rund_binary)" vm modules --kernel-directory "$kernel_dir" "$@"
}

# QEMU microvm's firmware as `--put PATH` arguments for the rig, each at its path on this host
# (QEMU in L1 is this host's binary and looks where it does). Debian's QEMU 10 keeps
# bios-microvm.bin with SeaBIOS, QEMU 7.2 in its own data directory.
qemu_microvm_firmware_puts() {
    local firmware directory found
    for firmware in qboot.rom bios-microvm.bin linuxboot_dma.bin; do
        found=
        for directory in /usr/share/qemu /usr/share/seabios; do
            if [[ -f $directory/$firmware ]]; then found=$directory/$firmware; break; fi
        done
        [[ -n $found ]] || die "QEMU firmware $firmware not found in /usr/share/qemu or /usr/share/seabios: run scripts/setup (as root)"
        printf '%s\n' --put "$found"
    done
}

# The CRI tests' client (Tests/IntegrationTests/Guests/cri): Python's grpcio from PyPI in a venv
# of Debian's python3 under ROOT/test-tools (made once; no Debian package has the CRI API).
# Prints the venv's site-packages directory.
CRI_CLIENT_PIP=(grpcio==1.85.4 grpcio-tools==1.85.4 protobuf==7.36.2)
cri_client_venv() {
    local venv=$1/test-tools/cri-venv site
    if ! "$venv/bin/python" -c 'import grpc, grpc_tools' 2>/dev/null; then
        [[ -x /usr/bin/python3 ]] || die "no /usr/bin/python3: apt-get install python3 python3-venv"
        rm -rf "$venv"
        /usr/bin/python3 -m venv "$venv" >&2 || die "python3 -m venv failed: apt-get install python3-venv"
        "$venv/bin/pip" install -q --disable-pip-version-check "${CRI_CLIENT_PIP[@]}" >&2 \
            || die "pip install ${CRI_CLIENT_PIP[*]} failed (the CRI test client needs PyPI)"
    fi
    site=$("$venv/bin/python" -c 'import grpc, os; print(os.path.dirname(os.path.dirname(grpc.__file__)))') \
        || die "the CRI client venv at $venv is broken: remove it and run again"
    printf '%s\n' "$site"
}
