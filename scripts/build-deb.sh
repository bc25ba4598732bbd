#!/usr/bin/env bash
# Builds the Debian packages from this checkout, with dpkg-deb (no cargo-deb: see
# docs/operations.md, "Installing from the Debian package", for the measurement):
#
#   target/debian/spamgate_VERSION-REV_ARCH.deb          the stripped binary, the systemd
#       unit and sysusers file, /etc/spamgate/spamgate.toml (a conffile), docs, man pages
#       and bash/zsh/fish completions generated from the binary's own CLI definition
#   target/debian/spamgate-dbgsym_VERSION-REV_ARCH.deb   the debug info split off the binary
#       (/usr/lib/debug/usr/bin/spamgate.debug, found by gdb through .gnu_debuglink)
#
# The files are staged by `make install DESTDIR=... PREFIX=/usr`, the same rule a source
# install uses, so the package cannot ship a different layout from `make install`.
#
# Usage: bash scripts/build-deb.sh            (prints the paths of the two .deb files)
# Needs: cargo, make, binutils (objcopy, readelf), dpkg (dpkg-deb, dpkg-query).
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
REPO=$PWD
REVISION=${SPAMGATE_DEB_REVISION:-1}
OUT=$REPO/target/debian
STAGE=$OUT/stage
DBG=$OUT/stage-dbgsym

die() { echo "build-deb: $*" >&2; exit 1; }
for cmd in cargo make objcopy readelf dpkg-deb dpkg-query gzip; do
    command -v "$cmd" >/dev/null || die "missing $cmd"
done

export CARGO_INCREMENTAL=0
cargo build --release --locked -p spamgate
BIN=$REPO/target/release/spamgate
VERSION=$("$BIN" --version | awk '{print $2}')
[[ $VERSION =~ ^[0-9][0-9A-Za-z.+~-]*$ ]] || die "cannot read the version from $BIN --version"
ARCH=$(dpkg --print-architecture)
DEBVERSION=$VERSION-$REVISION

rm -rf "$STAGE" "$DBG"
mkdir -p "$STAGE" "$DBG"
# `make install` generates the man pages and completions with the built binary.
make -s install DESTDIR="$STAGE" PREFIX=/usr SYSCONFDIR=/etc >/dev/null
DOC=$STAGE/usr/share/doc/spamgate

# Debug info: into its own file (the -dbgsym package), the binary stripped and linked to it.
mkdir -p "$DBG/usr/lib/debug/usr/bin"
# Compressed sections (gdb reads them): the -dbgsym package then needs no slow xz pass.
objcopy --only-keep-debug --compress-debug-sections=zlib "$STAGE/usr/bin/spamgate" \
    "$DBG/usr/lib/debug/usr/bin/spamgate.debug"
chmod 0644 "$DBG/usr/lib/debug/usr/bin/spamgate.debug"
objcopy --strip-debug --strip-unneeded \
    --add-gnu-debuglink="$DBG/usr/lib/debug/usr/bin/spamgate.debug" "$STAGE/usr/bin/spamgate"
sections=$(readelf -S -W "$STAGE/usr/bin/spamgate")
if grep -qE '\.debug_(info|line|str|abbrev) ' <<<"$sections"; then
    die "the packaged binary still has debug sections"
fi

# Docs: Debian wants the licence in copyright and compressed man pages and changelogs.
install -m 0644 README.md docs/operations.md docs/configuration.md "$DOC/"
cat >"$DOC/copyright" <<'EOF'
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: spamgate
Source: https://example.invalid/spamgate

Files: *
Copyright: the spamgate authors
License: MIT or Apache-2.0
 The full texts are in /usr/share/common-licenses/Apache-2.0 and at
 https://opensource.org/licenses/MIT.
EOF
printf 'spamgate (%s) unstable; urgency=medium\n\n  * Built from %s.\n\n -- spamgate builders <packages@example.invalid>  %s\n' \
    "$DEBVERSION" "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo 'a source tree')" \
    "$(date -R -d "@${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}")" \
    | gzip -9n >"$DOC/changelog.Debian.gz"
gzip -9n "$STAGE"/usr/share/man/man1/*.1
mkdir -p "$DBG/usr/share/doc"
ln -s spamgate "$DBG/usr/share/doc/spamgate-dbgsym"

# Depends: the package of every shared library the binary links, libc6 at least at the
# newest GLIBC_ symbol version it uses.
depends() {
    local lib path pkg deps=() glibc
    glibc=$(readelf --dyn-syms -W "$BIN" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' \
        | sort -uV | tail -1)
    for lib in $(readelf -d "$BIN" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p'); do
        path=$(ldconfig -p | awk -v l="$lib" '$1 == l && /x86-64|AArch64|64bit/ {print $NF; exit}')
        [[ -n $path ]] || path=$(ldconfig -p | awk -v l="$lib" '$1 == l {print $NF; exit}')
        [[ -n $path ]] || die "cannot find $lib"
        pkg=$(dpkg-query -S "$(readlink -f "$path")" 2>/dev/null | head -1 | cut -d: -f1) \
            || pkg=
        [[ -n $pkg ]] || pkg=$(dpkg-query -S "$path" | head -1 | cut -d: -f1)
        if [[ $pkg == libc6 && -n $glibc ]]; then pkg="libc6 (>= $glibc)"; fi
        [[ " ${deps[*]} " == *" $pkg"* ]] || deps+=("$pkg")
    done
    local IFS=,
    echo "${deps[*]}" | sed 's/,/, /g'
}
DEPENDS=$(depends)

control() { # package dir description...
    local package=$1 dir=$2
    shift 2
    mkdir -p "$dir/DEBIAN"
    (cd "$dir" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' \
        | LC_ALL=C sort -z | xargs -0r md5sum) >"$dir/DEBIAN/md5sums"
    {
        echo "Package: $package"
        echo "Version: $DEBVERSION"
        echo "Architecture: $ARCH"
        echo "Maintainer: spamgate builders <packages@example.invalid>"
        echo "Installed-Size: $(du -sk --exclude=DEBIAN "$dir" | cut -f1)"
        printf '%s\n' "$@"
    } >"$dir/DEBIAN/control"
}

control spamgate "$STAGE" \
    "Depends: $DEPENDS, systemd | passwd" \
    "Suggests: postfix, redis-server" \
    "Section: mail" \
    "Priority: optional" \
    "Homepage: https://example.invalid/spamgate" \
    "Description: anti-spam policy daemon for ISPs (Postfix policy delegation)" \
    " spamgate answers Postfix's SMTPD access policy delegation: DNSBL/DNSWL, reverse-DNS" \
    " (S25R) screening and selective greylisting inbound; per-account limits for" \
    " authenticated submission; OP25B rules and an abuse desk."
echo /etc/spamgate/spamgate.toml >"$STAGE/DEBIAN/conffiles"
install -m 0755 dist/debian/postinst dist/debian/prerm dist/debian/postrm "$STAGE/DEBIAN/"

control spamgate-dbgsym "$DBG" \
    "Depends: spamgate (= $DEBVERSION)" \
    "Section: debug" \
    "Priority: optional" \
    "Description: debug symbols for spamgate" \
    " The debug info split off /usr/bin/spamgate, for gdb and symbolised backtraces."

mkdir -p "$OUT"
MAIN=$OUT/spamgate_${DEBVERSION}_$ARCH.deb
DBGSYM=$OUT/spamgate-dbgsym_${DEBVERSION}_$ARCH.deb
dpkg-deb --root-owner-group -Zgzip --build "$STAGE" "$MAIN" >/dev/null
dpkg-deb --root-owner-group -Znone --build "$DBG" "$DBGSYM" >/dev/null
echo "$MAIN"
echo "$DBGSYM"
