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

# The guest kernel cache layout written by scripts/setup (a contract with the Swift code):
#   $ROOT/kernel/<version>/{vmlinuz,config,System.map?,version,modules/}
#   $ROOT/kernel/current -> <version>
kernel_cache_dir() {
    printf '%s/kernel\n' "$1"
}
