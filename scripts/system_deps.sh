#!/usr/bin/env bash
# Installs the Debian packages the tests need, when their commands are missing.
# Each line of NEEDED is "command package"; PostgreSQL's server is checked by its path below. Needs root and apt-get (CI has both); elsewhere it
# says what to install and fails, rather than letting tests skip.
# redis-tools ships Debian's TLS-capable Redis as /usr/bin/redis-check-rdb (the redis-server
# package only adds the redis-server name and a system service): the Redis TLS tests run it under
# the name redis-server, and every other test keeps the Redis shared/redis_server.py finds.
set -euo pipefail
NEEDED=(
  "promtool prometheus"
  "chromium chromium"
  "kubectl kubectl"
  "redis-check-rdb redis-tools"
)
missing=()
for entry in "${NEEDED[@]}"; do
  read -r command package <<<"$entry"
  command -v "$command" >/dev/null 2>&1 || missing+=("$package")
done
# PostgreSQL's server binaries are not on PATH: the library tests (testkit/postgres.py) and the
# library benchmark find them by this glob, newest version first.
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || missing+=("postgresql")
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing Debian packages: ${missing[*]} (install them, e.g. sudo apt-get install ${missing[*]})" >&2
  exit 1
fi
echo "installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
