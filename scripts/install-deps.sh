#!/usr/bin/env bash
# Installs the Debian packages Parley builds against, only those that are missing.
set -euo pipefail
need=()
# postgresql: the throwaway database the PostgreSQL store and cluster tests start (PostgresProcess).
for pkg in libssl-dev openssl pkg-config libedit-dev postgresql; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "install-deps: installing ${need[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq "${need[@]}" >/dev/null
