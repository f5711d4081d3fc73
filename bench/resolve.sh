#!/bin/sh
# resolve.sh measures /resolve under load against a bare net/http handler in
# the same run (see README.md, "Resolve under load"). It needs wrk
# (apt-get install -y wrk), takes about 15 minutes with the defaults, and
# stops by itself. Flags go to resolveload; e.g.
#
#   ./resolve.sh                                  # 3 rounds of the default cases
#   ./resolve.sh -rounds 0 -cases bare,sqlite-100k -profile sqlite-100k -out /tmp/rl
#   ./resolve.sh -cases bare,redis-100k,postgres-100k   # needs Redis and PostgreSQL on this machine
#   ./resolve.sh -cases bare,redis-1k,scs-redis-1k       # sessiond beside alexedwards/scs on one store
#   go tool pprof -top /tmp/rl/sqlite-100k.cpu.pprof
set -eu
cd "$(dirname "$0")"
command -v wrk >/dev/null || { echo "resolve.sh: needs wrk: apt-get install -y wrk" >&2; exit 1; }
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/resolveload" ./cmd/resolveload
"$bin/resolveload" "$@"
