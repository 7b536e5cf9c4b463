#!/usr/bin/env bash
# ensure-tools.sh COMMAND:PACKAGE ...: installs the Debian package of every COMMAND that is not
# on PATH (apt-get, with sudo unless root; `apt-get update` first only if the install fails
# on a stale package list). Used by the Makefile's bench targets, so that a fresh machine
# gets wrk, h2load, valgrind and the PostgreSQL client from the target that needs them.
# Without apt-get it names what to install and fails.
set -euo pipefail

missing_commands=()
packages=()
for pair in "$@"; do
    command=${pair%%:*}
    package=${pair#*:}
    command -v "$command" >/dev/null 2>&1 && continue
    missing_commands+=("$command")
    [[ " ${packages[*]-} " == *" $package "* ]] || packages+=("$package")
done
[ "${#packages[@]}" = 0 ] && exit 0

if ! command -v apt-get >/dev/null; then
    echo "missing: ${missing_commands[*]} (Debian packages: ${packages[*]}); install them with your package manager" >&2
    exit 1
fi
sudo=
[ "$(id -u)" = 0 ] || sudo=sudo
echo "installing Debian packages for ${missing_commands[*]}: ${packages[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null ||
    { $sudo apt-get update -qq && $sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null; }
for command in "${missing_commands[@]}"; do
    command -v "$command" >/dev/null || { echo "$command is still missing after installing ${packages[*]}" >&2; exit 1; }
done
