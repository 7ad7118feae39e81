# Host side of the kernel matrix (.ci/kernels.sh sources this file, after scripts/setup.sh
# kernels installed its tools): the Debian kernel packages and their modules, the busybox
# binary, the initramfs, the data disk, the virtual machine and the reading of its console.
#
# The caller sets:
#   km_repo    the repository root
#   km_cache   the cache directory (downloaded packages, extracted kernels)
#   km_work    a scratch directory for this run
# shellcheck shell=bash disable=SC2154

# The kernel series the matrix knows: series, the Debian suite that carries it, and the back end
# espora must report on it (espora=threads or io_uring in rinha-api's startup line). Both series
# predate the io_uring operations espora's own ring needs, so both must fall back to threads.
km_series_table=(
    "5.10 bullseye threads"
    "6.1 bookworm threads"
)

# Modules the guest needs for a virtio disk holding ext4. Their dependencies are added from each
# module's own `depends=` field, in load order. crc32c_generic comes first: ext4 and jbd2 ask the
# crypto API for "crc32c" at mount time, a soft dependency that no `depends=` field names.
km_wanted_modules=(crc32c_generic virtio_pci virtio_blk ext4)

km_log() { printf 'kernels: %s\n' "$*" >&2; }
km_die() {
    printf 'kernels: error: %s\n' "$*" >&2
    exit 1
}

km_is_root() { [ "$(id -u)" = 0 ]; }

# Seconds since the epoch with centiseconds, and the time elapsed since such a value.
km_now() { date +%s.%N; }
km_since() { awk -v start="$1" -v end="$(km_now)" 'BEGIN { printf "%.1f", end - start }'; }

# --- apt: resolving and downloading packages ---------------------------------------------------

# Prints field $2 (2: suite, 3: expected back end) of series $1's row.
km_series_field() {
    printf '%s\n' "${km_series_table[@]}" |
        awk -v series="$1" -v field="$2" '$1 == series { print $field; found = 1 } END { exit !found }' ||
        km_die "unknown kernel series $1 (known: ${km_series_table[*]%% *})"
}

# Prints the newest linux-image-<series>.0-N-amd64 package apt knows, or nothing.
km_newest_image_package() {
    local pattern="^linux-image-${1//./\\.}\\.0-[0-9]+-amd64\$"
    apt-cache search --names-only "$pattern" 2>/dev/null | awk '{ print $1 }' | sort -V | tail -n 1
}

# Prints the candidate version apt would download for package $1.
km_candidate_version() {
    apt-cache show --no-all-versions "$1" 2>/dev/null | awk '/^Version:/ { print $2; exit }'
}

# Tells apt about suite $1, which the host does not carry (bullseye on bookworm), and its security
# suite on mirror host $2 in a deb822 sources file, then updates apt's lists from that file alone
# (the lists of the other sources are kept).
km_add_suite() {
    local suite=$1 host=$2 file="/etc/apt/sources.list.d/kernel-matrix-$1.sources" archive
    km_is_root || km_die "the $suite suite is not in apt's sources; as root, this script adds it in $file"
    km_log "adding the $suite suite ($host) to apt in $file"
    {
        echo "# Added by .ci/kernels.sh (the kernel matrix) to download $suite's kernel packages."
        for archive in debian:"$suite" debian-security:"$suite-security"; do
            echo "Types: deb"
            echo "URIs: http://$host/${archive%%:*}"
            echo "Suites: ${archive#*:}"
            echo "Components: main"
            echo "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg"
            # An archived suite's Release files are past their Valid-Until date.
            [ "$host" != archive.debian.org ] || echo "Check-Valid-Until: no"
            echo
        done
    } >"$file"
    apt-get update -qq -o Dir::Etc::SourceList="$file" -o Dir::Etc::SourceParts=/nonexistent \
        -o APT::Get::List-Cleanup=0 >&2 || km_log "apt-get update of $file reported errors"
}

# Prints the newest kernel image package of series $1, adding its suite to apt when the host's
# sources do not carry it: first on deb.debian.org, then on archive.debian.org.
km_resolve_image_package() {
    local series=$1 suite package host
    suite=$(km_series_field "$series" 2)
    package=$(km_newest_image_package "$series")
    for host in deb.debian.org archive.debian.org; do
        [ -z "$package" ] || break
        km_add_suite "$suite" "$host"
        package=$(km_newest_image_package "$series")
    done
    echo "$package"
}

# Downloads package $1 at version $2 into $km_cache/debs unless it is there; prints the path.
km_download() {
    local package=$1 version=$2 debs="$km_cache/debs" partial deb
    deb="$debs/${package}_${version//:/%3a}_amd64.deb"
    if [ ! -s "$deb" ]; then
        mkdir -p "$debs"
        partial=$(mktemp -d "$debs/.partial.XXXXXX")
        # apt downloads as the unprivileged _apt user when it can write the directory.
        if km_is_root && id _apt >/dev/null 2>&1; then chown _apt "$partial"; fi
        km_log "downloading $package $version"
        (cd "$partial" && apt-get download -q=2 "$package=$version" >&2) ||
            { rm -rf "$partial"; km_die "apt-get download $package=$version failed"; }
        mv "$partial"/*.deb "$deb" || km_die "apt-get download left no .deb for $package"
        rm -rf "$partial"
    fi
    echo "$deb"
}

# --- kernels -----------------------------------------------------------------------------------

# Sets km_kernel_dir to the prepared kernel of series $1: vmlinuz, modules/*.ko (uncompressed),
# modules/load.list (load order) and release (its `uname -r`). Reuses the cache; when apt can no
# longer resolve the series, the newest package of the series already in the cache is used.
km_prepare_kernel() {
    local series=$1 package version deb
    package=$(km_resolve_image_package "$series")
    if [ -n "$package" ]; then
        version=$(km_candidate_version "$package")
        [ -n "$version" ] || km_die "apt-cache knows $package but gives no version"
        deb=$(km_download "$package" "$version")
    else
        deb=$(km_cached_package "$series")
        [ -n "$deb" ] ||
            km_die "no linux-image-$series.0-*-amd64 package on deb.debian.org or archive.debian.org, and none cached"
        km_log "apt offers no $series kernel; using the cached $(basename "$deb")"
    fi
    # linux-image-5.10.0-46-amd64_5.10.262-1_amd64.deb -> linux-image-5.10.0-46-amd64_5.10.262-1
    km_kernel_dir="$km_cache/kernels/$(basename "$deb" _amd64.deb)"
    # Extracted again unless complete with the modules km_wanted_modules names now (the package
    # stays in the cache, so a change of the list costs an extraction, no download).
    if [ "$(cat "$km_kernel_dir/.complete" 2>/dev/null)" != "${km_wanted_modules[*]}" ]; then
        km_extract_kernel "$deb" "$km_kernel_dir"
    fi
}

# Prints the newest cached kernel package of series $1, or nothing.
km_cached_package() {
    local deb
    for deb in "$km_cache/debs/linux-image-$1.0-"*-amd64_*_amd64.deb; do
        if [ -s "$deb" ]; then echo "$deb"; fi
    done | sort -V | tail -n 1
}

# Extracts kernel package $1 and keeps what the guest needs in directory $2.
km_extract_kernel() {
    local deb=$1 dest=$2 tree release name
    tree=$(mktemp -d "$km_work/extract.XXXXXX")
    km_log "extracting $(basename "$deb")"
    dpkg-deb -x "$deb" "$tree" || km_die "dpkg-deb -x $deb failed"
    release=$(ls "$tree/lib/modules")
    if [ -z "$release" ] || [ ! -f "$tree/boot/vmlinuz-$release" ]; then
        km_die "$deb holds no boot/vmlinuz-<release> and lib/modules/<release>"
    fi
    rm -rf "$dest"
    mkdir -p "$dest/modules"
    cp "$tree/boot/vmlinuz-$release" "$dest/vmlinuz"
    echo "$release" >"$dest/release"
    # The wanted modules and their dependencies, uncompressed, listed in load order (dependencies
    # before their users) in modules/load.list; built-in modules are skipped.
    : >"$dest/modules/load.list"
    for name in "${km_wanted_modules[@]}"; do
        km_add_module "$tree/lib/modules/$release" "$dest/modules" "$name"
    done
    km_log "modules for $release: $(tr '\n' ' ' <"$dest/modules/load.list")"
    rm -rf "$tree"
    echo "${km_wanted_modules[*]}" >"$dest/.complete"
}

# Adds module $3 (after its dependencies) unless it is listed, built in, or already added.
km_add_module() {
    local tree=$1 out=$2 name=${3//-/_} file dep deps
    grep -qx "$name" "$out/load.list" && return 0
    if km_module_builtin "$tree" "$name"; then
        km_log "$(basename "$tree"): $name is built in"
        return 0
    fi
    file=$(find "$tree/kernel" \( -name "$name.ko*" -o -name "${name//_/-}.ko*" \) -print -quit)
    [ -n "$file" ] || km_die "$(basename "$tree"): module $name not found"
    km_decompress_module "$file" "$out/$name.ko"
    deps=$(tr '\0' '\n' <"$out/$name.ko" | sed -n 's/^depends=//p' | head -n 1)
    for dep in ${deps//,/ }; do
        km_add_module "$tree" "$out" "$dep"
    done
    echo "$name" >>"$out/load.list"
}

km_module_builtin() {
    [ -f "$1/modules.builtin" ] &&
        sed 's|.*/||; s|\.ko$||; s|-|_|g' "$1/modules.builtin" | grep -qx "$2"
}

# Writes module file $1 to $2, decompressing .ko.xz, .ko.zst and .ko.gz (busybox insmod reads
# plain ELF files).
km_decompress_module() {
    case $1 in
        *.ko) cp "$1" "$2" ;;
        *.ko.xz) xz -dc "$1" >"$2" ;;
        *.ko.zst) zstd -qdc "$1" >"$2" ;;
        *.ko.gz) gzip -dc "$1" >"$2" ;;
        *) km_die "unknown module file $1" ;;
    esac
}

# --- busybox -----------------------------------------------------------------------------------

# Sets km_busybox to a static busybox from Debian's busybox-static package: the installed one,
# else one downloaded and extracted into the cache (the host's own busybox is left alone).
km_prepare_busybox() {
    local version deb dir
    if dpkg-query -W -f '${Status}' busybox-static 2>/dev/null | grep -q 'ok installed'; then
        km_busybox=$(dpkg -L busybox-static | grep -m 1 '/busybox$')
    else
        version=$(km_candidate_version busybox-static)
        [ -n "$version" ] || km_die "apt knows no busybox-static package"
        dir="$km_cache/busybox-static_${version//:/%3a}"
        if [ ! -x "$dir/bin/busybox" ]; then
            deb=$(km_download busybox-static "$version")
            rm -rf "$dir"
            dpkg-deb -x "$deb" "$dir" || km_die "dpkg-deb -x $deb failed"
        fi
        km_busybox="$dir/bin/busybox"
    fi
    [ -x "$km_busybox" ] || km_die "no busybox binary in busybox-static"
    km_require_static "$km_busybox"
}

km_require_static() {
    local report
    report=$(LC_ALL=C ldd "$1" 2>&1 || true)
    case $report in
        *"not a dynamic executable"* | *"statically linked"*) ;;
        *) km_die "$1 is not statically linked" ;;
    esac
}

# --- guest images ------------------------------------------------------------------------------

# Writes a gzip'd newc initramfs to $1: busybox and its applet links, /init, the guest script and
# its configuration $3, the binaries of directory $4 and the modules of kernel directory $2.
km_make_initramfs() {
    local out=$1 kernel=$2 config=$3 bins=$4 stage applet name
    stage=$(mktemp -d "$km_work/initramfs.XXXXXX")
    mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,run,tmp,mnt/data,km/bin,lib/modules}
    cp "$km_busybox" "$stage/bin/busybox"
    for applet in $("$km_busybox" --list-full); do
        [ -e "$stage/$applet" ] || ln -s /bin/busybox "$stage/$applet"
    done
    install -m 0755 "$km_repo/scripts/kernel-matrix/init" "$stage/init"
    install -m 0755 "$km_repo/scripts/kernel-matrix/guest.sh" "$stage/km/guest.sh"
    cp "$config" "$stage/km/config"
    for name in rinha-api rinha-lb rinha-scenario espora; do
        cp "$bins/$name" "$stage/km/bin/$name"
    done
    cp "$kernel"/modules/*.ko "$kernel/modules/load.list" "$stage/lib/modules/"
    (cd "$stage" && find . -print | LC_ALL=C sort | cpio -o -H newc -R 0:0 --quiet) | gzip -1 >"$out" ||
        km_die "building the initramfs failed"
    rm -rf "$stage"
}

# Creates the guest's data disk $1: a sparse file of 512 MiB (each driver's run leaves about 50 MB
# of account files) holding an empty ext4 file system with the features of mke2fs.conf next to
# this file, which every kernel of the matrix mounts.
km_make_disk() {
    rm -f "$1"
    truncate -s 512M "$1"
    MKE2FS_CONFIG="$km_repo/scripts/kernel-matrix/mke2fs.conf" \
        mkfs.ext4 -q -F -L rinha-data -E lazy_itable_init=0,lazy_journal_init=0 "$1" ||
        km_die "mkfs.ext4 on $1 failed"
}

# --- the virtual machine -----------------------------------------------------------------------

# Boots kernel directory $1 with initramfs $2 and disk $3 under TCG (KERNELS_SMP virtual CPUs,
# KERNELS_MEMORY MiB), the serial console copied to $4 and to stdout (each line prefixed with
# $5); gives up after $6 seconds. Returns qemu's status (124 when the time ran out).
km_boot() {
    local kernel=$1 initramfs=$2 disk=$3 console=$4 label=$5 limit=$6
    timeout -k 5 "$limit" qemu-system-x86_64 \
        -accel tcg,thread=multi -cpu max -smp "${KERNELS_SMP:-2}" -m "${KERNELS_MEMORY:-2048}" \
        -nodefaults -no-user-config -display none -no-reboot \
        -serial stdio -monitor none \
        -kernel "$kernel/vmlinuz" -initrd "$initramfs" \
        -append "console=ttyS0 panic=-1 quiet loglevel=3 random.trust_cpu=on mitigations=off" \
        -drive "file=$disk,if=virtio,format=raw,cache=unsafe" \
        </dev/null 2>&1 | sed -u 's/\r$//' | tee "$console" | sed -u "s/^/  [$label] /" ||
        return "${PIPESTATUS[0]}"
}

# --- reading the console -----------------------------------------------------------------------

# The checks the guest reports for every driver, in its order.
km_checks=(ready driver scenario restart kill-load stop verify backend kernel-log)

# Reads console log $1 of a VM that ran drivers $2, appends a row per driver to $km_work/summary
# (kernel, driver, seconds, verdict, details), prints each problem and returns 1 if there is one.
km_judge() {
    local console=$1 drivers=$2 label=$3 failed=0 driver check line status seconds problems verdict
    if ! grep -q '^KM END' "$console"; then
        echo "FAIL [$label] the guest did not finish (no 'KM END' line on the console)"
        failed=1
    fi
    grep -q '^KM UNAME ' "$console" || { echo "FAIL [$label] no 'KM UNAME' line"; failed=1; }
    for driver in $drivers; do
        problems=""
        for check in "${km_checks[@]}"; do
            line=$(grep -m 1 "^KM RESULT $driver $check " "$console" || true)
            status=$(awk '{ print $5 }' <<<"$line")
            case $status in
                PASS) ;;
                MISSING) problems+=" $check:missing(tolerated)" ;;
                FAIL)
                    problems+=" $check:FAIL"
                    failed=1
                    echo "FAIL [$label] $driver $check: $(cut -d ' ' -f 6- <<<"$line")"
                    ;;
                "") problems+=" $check:no-result"; failed=1 ;;
                *) problems+=" $check:$status"; failed=1 ;;
            esac
        done
        seconds=$(grep -m 1 "^KM TIME $driver " "$console" | awk '{ print $4 }' || true)
        if [ -z "$seconds" ]; then
            problems+=" time:no-result"
            failed=1
        fi
        verdict=PASS
        [[ $problems != *FAIL* && $problems != *no-result* ]] || verdict=FAIL
        echo "$label $driver ${seconds:--} $verdict$problems" >>"$km_work/summary"
    done
    return "$failed"
}
