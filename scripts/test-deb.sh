#!/usr/bin/env bash
# Builds the Debian packages (scripts/build-deb.sh), installs them on this machine with
# apt-get, checks what an operator relies on, then removes and purges them again:
#   - `spamgate --version` from /usr/bin, stripped, its debug info in the -dbgsym package;
#   - `systemd-analyze verify` on the installed unit and on dist/'s abuse desk units
#     (deliver, purge) and timers; the sysusers user exists;
#   - /etc/spamgate/spamgate.toml is a conffile, valid (`spamgate config check`), kept
#     with the operator's edit over remove + reinstall, gone after purge;
#   - the man pages and bash/zsh/fish completions are where man and the shells look;
#   - remove leaves the conffile, purge leaves nothing of the package.
# Needs root (it installs packages); refuses to run if spamgate is already installed.
# Usage: bash scripts/test-deb.sh
set -Eeuo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

die() { echo "test-deb: FAIL: $*" >&2; exit 1; }
ok() { echo "test-deb: ok: $*"; }
[[ $(id -u) -eq 0 ]] || die "needs root (installs the package)"
if dpkg-query -W -f='${Status}' spamgate 2>/dev/null | grep -q 'installed\|config-files'; then
    die "spamgate is already installed here; not touching it"
fi

# What the checks need: systemd-analyze (systemd), objcopy/readelf (binutils), man (man-db).
missing=()
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v objcopy >/dev/null || missing+=(binutils)
command -v man >/dev/null || missing+=(man-db)
command -v make >/dev/null || missing+=(make)
if ((${#missing[@]})); then
    apt-get update -q
    # No service may start while installing (policy-rc.d exits 101).
    own_policy=
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
    [[ -z $own_policy ]] || rm -f /usr/sbin/policy-rc.d
fi

start=$SECONDS
mapfile -t debs < <(bash scripts/build-deb.sh)
MAIN=${debs[0]}
DBGSYM=${debs[1]}
[[ -f $MAIN && -f $DBGSYM ]] || die "build-deb.sh did not print two packages"
ok "built $(basename "$MAIN") ($(du -h "$MAIN" | cut -f1)) and $(basename "$DBGSYM") ($(du -h "$DBGSYM" | cut -f1)) in $((SECONDS - start)) s"

# Whatever happens below, leave the machine without the package.
cleanup() { DEBIAN_FRONTEND=noninteractive apt-get purge -y -q spamgate spamgate-dbgsym >/dev/null 2>&1 || true; }
trap cleanup EXIT

apt_install() {
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" \
        >/tmp/test-deb-apt.log 2>&1 || { cat /tmp/test-deb-apt.log >&2; die "apt-get install $*"; }
}
apt_install "$MAIN" "$DBGSYM"
ok "installed with apt-get"

version=$(/usr/bin/spamgate --version)
want=$(dpkg-query -W -f='${Version}' spamgate)
[[ "$version" == "spamgate ${want%-*}" ]] || die "spamgate --version says '$version', package is $want"
ok "$version"

grep -qE '\.debug_(info|line|str|abbrev) ' <<<"$(readelf -S -W /usr/bin/spamgate)" \
    && die "/usr/bin/spamgate has debug sections"
link=$(readelf --string-dump=.gnu_debuglink /usr/bin/spamgate 2>/dev/null | sed -n 's/.*\] *\(.*\.debug\)$/\1/p')
[[ $link == spamgate.debug && -s /usr/lib/debug/usr/bin/spamgate.debug ]] \
    || die "no debug link to /usr/lib/debug/usr/bin/spamgate.debug (link: '$link')"
grep -q '\.debug_line ' <<<"$(readelf -S -W /usr/lib/debug/usr/bin/spamgate.debug 2>/dev/null)" \
    || die "the -dbgsym file has no line tables"
ok "binary stripped ($(du -h /usr/bin/spamgate | cut -f1)), debug info in spamgate-dbgsym ($(du -h /usr/lib/debug/usr/bin/spamgate.debug | cut -f1))"

unit=/usr/lib/systemd/system/spamgate.service
[[ -f $unit ]] || die "no $unit"
grep -q '^ExecStart=/usr/bin/spamgate serve' "$unit" || die "ExecStart does not name /usr/bin/spamgate"
out=$(systemd-analyze verify "$unit" 2>&1) || die "systemd-analyze verify: $out"
# verify exits 0 on some warnings; anything it says about our unit is a failure.
if grep -i 'spamgate' <<<"$out"; then die "systemd-analyze verify complained"; fi
ok "systemd-analyze verify $unit"

# The abuse desk's oneshot units and timers in dist/ (installed by hand, docs/operations.md):
# each verifies against the installed binary, each timer has its service, and every
# ExecStart names a command the binary has.
units=$(mktemp -d)
for f in dist/spamgate-abuse-*.service dist/spamgate-abuse-*.timer; do
    sed 's|/usr/local/bin/spamgate|/usr/bin/spamgate|' "$f" >"$units/$(basename "$f")"
done
for timer in "$units"/*.timer; do
    [[ -f ${timer%.timer}.service ]] || die "$(basename "$timer") has no service"
done
out=$(cd "$units" && systemd-analyze verify ./*.service ./*.timer 2>&1) \
    || die "systemd-analyze verify: $out"
if grep -i 'spamgate' <<<"$out"; then die "systemd-analyze verify complained about the abuse units"; fi
while read -r line; do
    read -r -a words <<<"${line#ExecStart=}"
    "${words[0]}" "${words[1]}" "${words[2]}" --help >/dev/null \
        || die "$line: ${words[1]} ${words[2]} is not a spamgate command"
done < <(grep -h '^ExecStart=' "$units"/*.service)
ok "systemd-analyze verify $(cd "$units" && echo *)"
rm -rf "$units"

getent passwd spamgate >/dev/null || die "postinst did not create the spamgate user"
[[ $(stat -c %U /var/lib/spamgate) == spamgate ]] || die "/var/lib/spamgate not owned by spamgate"
[[ -f /usr/lib/sysusers.d/spamgate.conf ]] || die "no sysusers file"
ok "user spamgate (sysusers), /var/lib/spamgate"

dpkg-query -W -f='${Conffiles}\n' spamgate | grep -q '^ /etc/spamgate/spamgate.toml ' \
    || die "/etc/spamgate/spamgate.toml is not a conffile"
/usr/bin/spamgate config check --config /etc/spamgate/spamgate.toml >/dev/null 2>&1 \
    || die "the shipped configuration does not pass config check"
ok "conffile /etc/spamgate/spamgate.toml, passes config check"

[[ -f /usr/share/man/man1/spamgate.1.gz ]] || die "no man page spamgate.1.gz"
[[ -f /usr/share/man/man1/spamgate-greylist-list.1.gz ]] || die "no man page for a subcommand"
MANPAGER=cat MANWIDTH=80 man spamgate 2>/dev/null | grep -q 'serve' || die "man spamgate does not list serve"
for f in /usr/share/bash-completion/completions/spamgate \
    /usr/share/zsh/vendor-completions/_spamgate \
    /usr/share/fish/vendor_completions.d/spamgate.fish; do
    [[ -s $f ]] || die "no completion $f"
    grep -q 'greylist' "$f" || die "$f does not complete the greylist command"
done
bash -c 'source /usr/share/bash-completion/completions/spamgate && complete -p spamgate' >/dev/null \
    || die "the bash completion does not register for spamgate"
[[ -f /usr/share/doc/spamgate/copyright && -f /usr/share/doc/spamgate/postfix.md ]] \
    || die "docs missing"
ok "man pages, completions (bash, zsh, fish), docs"

# An operator's edit survives remove and reinstall; purge removes it.
echo '# edited by the operator' >>/etc/spamgate/spamgate.toml
DEBIAN_FRONTEND=noninteractive apt-get remove -y -q spamgate-dbgsym spamgate >/dev/null
[[ ! -e /usr/bin/spamgate ]] || die "remove left /usr/bin/spamgate"
grep -q 'edited by the operator' /etc/spamgate/spamgate.toml || die "remove lost the edited conffile"
apt_install "$MAIN"
grep -q 'edited by the operator' /etc/spamgate/spamgate.toml || die "reinstall replaced the edited conffile"
ok "remove keeps the edited conffile, reinstall keeps the edit"

DEBIAN_FRONTEND=noninteractive apt-get purge -y -q spamgate >/dev/null
for p in /usr/bin/spamgate /etc/spamgate /var/lib/spamgate "$unit" /usr/share/man/man1/spamgate.1.gz; do
    [[ ! -e $p ]] || die "purge left $p"
done
dpkg-query -W spamgate >/dev/null 2>&1 && [[ -n $(dpkg-query -W -f='${Status}' spamgate | grep -v not-installed) ]] \
    && die "dpkg still knows spamgate"
ok "purge removed the package, its conffile and /var/lib/spamgate"
trap - EXIT
echo "test-deb: all checks passed in $((SECONDS - start)) s"
