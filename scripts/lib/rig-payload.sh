# The rig's initramfs, in two concatenated cpio archives (sourced by scripts/rig):
#   base    - busybox, /init, the kvm modules; cached per kernel version and content hash;
#   payload - the --put files, their shared libraries, extra modules and the command; per run.
# Archives are left uncompressed: under TCG the kernel copies ~1 GB/s but inflates far slower.

# Where busybox-static puts its binary (the dynamic busybox package would not run in L1).
readonly STATIC_BUSYBOX=/bin/busybox

# L1 is usr-merged like Debian 12 (/bin, /sbin, /lib, /lib64 are symlinks into /usr), so host
# paths through those symlinks are stored under /usr.
usr_merged() {
    case $1 in
        /bin|/bin/*|/sbin|/sbin/*|/lib|/lib/*|/lib64|/lib64/*) printf '/usr%s\n' "$1" ;;
        *) printf '%s\n' "$1" ;;
    esac
}

# Writes a cpio (newc, owned by root) of everything under DIR to stdout; parents come first.
cpio_of_tree() {
    (cd "$1" && find . -mindepth 1 -printf '%P\0' | LC_ALL=C cpio --null -o -H newc -R 0:0 --quiet)
}

# Fills DIR with L1's base tree: usr-merged layout, busybox and its applets, /init, modules.
write_base_tree() {
    local tree=$1 kernel_dir=$2 version=$3 modules=$4 applet target module
    mkdir -p "$tree"/{usr/bin,usr/sbin,usr/lib,usr/lib64,proc,sys,dev,tmp,root,etc,rig}
    chmod 1777 "$tree/tmp"
    chmod 700 "$tree/root"
    for target in bin sbin lib lib64; do ln -s "usr/$target" "$tree/$target"; done
    cp "$STATIC_BUSYBOX" "$tree/usr/bin/busybox"
    while read -r applet; do
        applet=$(usr_merged "/$applet")
        [[ -e $tree$applet || $applet == /usr/bin/busybox ]] || ln -s /usr/bin/busybox "$tree$applet"
    done < <("$STATIC_BUSYBOX" --list-full)
    install -m 755 "$HERE/lib/rig-init.sh" "$tree/init"
    printf 'root:x:0:0:root:/root:/bin/sh\n' >"$tree/etc/passwd"
    printf 'root:x:0:\n' >"$tree/etc/group"
    mknod -m 600 "$tree/dev/console" c 5 1 2>/dev/null || true
    for module in $modules; do
        mkdir -p "$tree/usr/lib/modules/$version/$(dirname "$module")"
        cp "$kernel_dir/modules/$module" "$tree/usr/lib/modules/$version/$module"
    done
    printf '%s\n' $modules >"$tree/rig/modules.base"
}

# Prints the path of the cached base archive for this kernel, building it if missing.
# The cache key covers everything that shapes the archive: kernel version, modules, the init
# script, busybox and the functions that lay the tree out.
ensure_base_initramfs() {
    local cache=$1 kernel_dir=$2 version=$3
    shift 3
    local modules key archive tmp
    [[ -x $STATIC_BUSYBOX ]] && ! ldd "$STATIC_BUSYBOX" >/dev/null 2>&1 \
        || die "$STATIC_BUSYBOX is missing or not static: run scripts/setup (installs busybox-static)"
    modules=$(module_load_order "$kernel_dir" "$@") || die "kernel $version lacks modules $*: re-run scripts/setup"
    key=$({
        printf '%s\n%s\n' "$version" "$modules"
        cat "$HERE/lib/rig-init.sh" "$STATIC_BUSYBOX"
        declare -f usr_merged write_base_tree cpio_of_tree
    } | sha256sum | cut -c1-16)
    archive=$cache/base-$version-$key.cpio
    if [[ ! -f $archive ]]; then
        mkdir -p "$cache"
        tmp=$(mktemp -d "$cache/.build.XXXXXX")
        write_base_tree "$tmp/tree" "$kernel_dir" "$version" "$modules"
        cpio_of_tree "$tmp/tree" >"$tmp/base.cpio" || { rm -rf "$tmp"; die "building the base initramfs failed"; }
        mv "$tmp/base.cpio" "$archive"
        rm -rf "$tmp"
    fi
    printf '%s\n' "$archive"
}

# Adds to the associative array named by $2 the shared libraries (and dynamic loader) that
# every ELF file at PATH (a file, or the files under a directory) needs, as ldd resolves them.
collect_libraries() {
    local path=$1 file magic line lib
    local -n found=$2
    while IFS= read -r -d '' file; do
        magic=""
        IFS= read -r -n 4 -d '' magic <"$file" 2>/dev/null || true
        [[ $magic == $'\x7fELF' ]] || continue
        while IFS= read -r line; do
            line=${line#"${line%%[![:space:]]*}"}
            case $line in
                *"=> not found"*) die "--put: $file needs ${line%% =>*}, which ldd cannot find on this host" ;;
                *" => /"*) lib=${line#*=> } ;;
                /*) lib=$line ;;
                *) continue ;;
            esac
            found[${lib% (0x*}]=1
        done < <(ldd -- "$file" 2>/dev/null || true)
    done < <(find -L "$path" -type f -print0)
}

# Builds DIR.cpio: the --put files (array named by $4), their libraries, the extra modules (array
# named by $5) and /rig/command, which execs the remaining arguments.
build_payload() {
    local stage=$1 kernel_dir=$2 version=$3
    local -n put_specs=$4 wanted_modules=$5
    shift 5
    local spec host l1 lib dest arg module
    local -A libraries=()
    mkdir -p "$stage/rig"
    for spec in ${put_specs[@]+"${put_specs[@]}"}; do
        host=$spec l1=""
        if [[ $spec == *:/* ]]; then host=${spec%%:/*} l1=/${spec#*:/}; fi
        [[ -n $host && ( -e $host || -L $host ) ]] || die "--put: '$host' does not exist on this host"
        host=$(realpath -s -- "$host")
        l1=$(realpath -sm -- "${l1:-$host}")
        l1=$(usr_merged "$l1")
        case $l1 in
            /|/init|/rig|/rig/*) die "--put: '$spec' would replace L1's $l1, which the rig needs" ;;
        esac
        mkdir -p "$stage$(dirname "$l1")"
        cp -aHT -- "$host" "$stage$l1" || die "--put: copying '$host' failed"
        collect_libraries "$host" libraries
    done
    for lib in "${!libraries[@]}"; do
        dest=$(usr_merged "$lib")
        [[ -e $stage$dest ]] && continue # an explicit --put wins
        mkdir -p "$stage$(dirname "$dest")"
        cp -L --preserve=mode -- "$lib" "$stage$dest" || die "copying library '$lib' failed"
    done
    if ((${#wanted_modules[@]})); then
        local order
        order=$(module_load_order "$kernel_dir" "${wanted_modules[@]}") || die "--module: kernel $version lacks one of ${wanted_modules[*]}"
        for module in $order; do
            mkdir -p "$stage/usr/lib/modules/$version/$(dirname "$module")"
            cp "$kernel_dir/modules/$module" "$stage/usr/lib/modules/$version/$module"
        done
        printf '%s\n' $order >"$stage/rig/modules.extra"
    fi
    {
        printf 'exec'
        for arg in "$@"; do printf " '%s'" "${arg//\'/\'\\\'\'}"; done
        printf '\n'
    } >"$stage/rig/command"
    cpio_of_tree "$stage" >"$stage.cpio" || die "building the payload archive failed"
    rm -rf "$stage"
}
