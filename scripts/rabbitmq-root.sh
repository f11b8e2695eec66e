#!/usr/bin/env bash
# Prepares a Debian root holding a newer RabbitMQ for the sandbox (`broker start --rabbitmq 4.0|4.3`, the test matrix):
#   4.0 -> Debian 13 (trixie): RabbitMQ 4.0.5 on Erlang 27.3
#   4.3 -> Debian forky (testing): RabbitMQ 4.3.6 on Erlang 29.1
# Made once (about 40 s and 390 MB each) and kept in $BRIDGESCOPE_CACHE_DIR/rabbitmq/<suite> (default
# ~/.cache/bridgescope/rabbitmq/<suite>); prints that folder. Running it again, or twice at once, is harmless: the root
# is built in a temporary folder under a lock and renamed into place when complete.
# Needs root (debootstrap), debootstrap and flock. The mirror is the one this machine's apt sources use, unless
# BRIDGESCOPE_DEBIAN_MIRROR names another.
set -euo pipefail

usage() { echo "usage: $0 4.0|4.3" >&2; exit 2; }
[ $# -eq 1 ] || usage
case "$1" in
  4.0|trixie) suite=trixie ;;
  4.3|forky) suite=forky ;;
  *) usage ;;
esac

cache="${BRIDGESCOPE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/bridgescope}/rabbitmq"
target="$cache/$suite"
ready="$target/.bridgescope-root-ready"
if [ -f "$ready" ]; then echo "$target"; exit 0; fi

[ "$(id -u)" -eq 0 ] || { echo "Preparing a RabbitMQ root needs root (debootstrap, chroot); run this script with sudo." >&2; exit 1; }
command -v debootstrap >/dev/null || { echo "debootstrap is not installed: apt-get install debootstrap" >&2; exit 1; }

mirror="${BRIDGESCOPE_DEBIAN_MIRROR:-}"
if [ -z "$mirror" ]; then
  # The first Debian archive (not -security) the machine's apt sources name, deb822 or one-line style.
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs:[[:space:]]*//p' | tr ' ' '\n' | grep -v -- '-security' | grep '/debian/*$' | head -n1 || true)
  [ -n "$mirror" ] || mirror=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | awk '$1 == "deb" && $2 !~ /security/ && $2 ~ /\/debian\/?$/ { print $2; exit }' || true)
fi
[ -n "$mirror" ] || { echo "No Debian mirror found in /etc/apt/sources*: set BRIDGESCOPE_DEBIAN_MIRROR." >&2; exit 1; }

mkdir -p "$cache"
exec 9>"$cache/$suite.lock"
flock 9
# Another run may have finished it while this one waited for the lock.
if [ -f "$ready" ]; then echo "$target"; exit 0; fi

work=$(mktemp -d "$cache/$suite.building.XXXXXX")
trap 'rm -rf --one-file-system "$work"' EXIT
script=()
# forky (testing) has no debootstrap script of its own in older debootstrap releases: sid's works.
if [ "$suite" = forky ] && [ ! -e "/usr/share/debootstrap/scripts/forky" ]; then script=(/usr/share/debootstrap/scripts/sid); fi
echo "== debootstrap $suite (RabbitMQ from Debian $suite) into $work" >&2
debootstrap --variant=minbase --include=rabbitmq-server "$suite" "$work/root" "$mirror" "${script[@]}" >&2

# The installed package may have left a service running inside (it should not: debootstrap fakes start-stop-daemon).
[ -x "$work/root/usr/lib/rabbitmq/bin/rabbitmq-server" ] || { echo "debootstrap finished but $suite's root has no rabbitmq-server" >&2; exit 1; }
# Mount points of a running node: its sandbox folder, and the machine's /etc/hosts (bound over this copy).
mkdir -p "$work/root/sandbox"
cp /etc/hosts "$work/root/etc/hosts"
version=$(sed -n 's/^Version: //p' <(chroot "$work/root" dpkg-query -s rabbitmq-server))
erlang=$(cat "$work/root"/usr/lib/erlang/releases/*/OTP_VERSION 2>/dev/null | head -n1)
printf '{ "suite": "%s", "rabbitmq": "%s", "erlang": "%s" }\n' "$suite" "$version" "$erlang" >"$work/root/.bridgescope-root.json"

rm -rf --one-file-system "$target"
mv "$work/root" "$target"
touch "$ready"
echo "== $suite root ready: RabbitMQ $version, Erlang $erlang, $(du -sh "$target" | cut -f1)" >&2
echo "$target"
