#!/usr/bin/env bash
# Two builds' stats endpoints in one run, on the same data: each build serves its own copy of a
# SQLite database kept by `BENCH_KEEP=DIR scripts/bench.sh --stats` (a newer build migrates its
# copy first), and the requests alternate between the two, BENCH_STATS_REPEAT each
# (p50/p95, ms). Every answer of the new build must equal the base build's (`from`/`to` aside:
# they are read at the second of the request). Needs curl and jq.
#   scripts/bench/stats-ab.sh BASE_BIN BASE_DB NEW_BIN NEW_DB
# A database may also be a URL: both builds on the MySQL database a `--stats --store mysql` run
# kept (mysql://root@127.0.0.1:3306/clicktrack_bench_stats), given twice.
set -euo pipefail
[ $# -eq 4 ] || { echo "usage: $0 BASE_BIN BASE_DB NEW_BIN NEW_DB" >&2; exit 2; }
base_bin=$1 base_db=$2 new_bin=$3 new_db=$4
repeat="${BENCH_STATS_REPEAT:-20}"
token="bench-stats-token-0123456789"
work=$(mktemp -d)
pids=()
cleanup() {
  [ ${#pids[@]} -eq 0 ] || kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# A path is an SQLite file; anything with a scheme is a database URL as it is.
url() { case "$1" in *://*) echo "$1" ;; *) echo "sqlite://$1" ;; esac; }
"$new_bin" migrate --database-url "$(url "$new_db")" --log-format json >/dev/null
# serve BIN DB PORT: the admin API on PORT + 1.
serve() {
  "$1" serve --listen "127.0.0.1:$3" --admin-listen "127.0.0.1:$(($3 + 1))" \
    --database-url "$(url "$2")" --spool-path "$work/spool-$3.db" --admin-token "$token" \
    --log-format json 2>"$work/serve-$3.log" &
  pids+=($!)
  for _ in $(seq 1 200); do
    curl -fsS -o /dev/null "http://127.0.0.1:$(($3 + 1))/readyz" 2>/dev/null && return
    sleep 0.05
  done
  echo "bench: $1 did not start: $(tail -3 "$work/serve-$3.log")" >&2
  exit 1
}
serve "$base_bin" "$base_db" 18180
serve "$new_bin" "$new_db" 18190

now=$(date +%s)
# shellcheck source=scripts/bench/stats-endpoints.sh
. "$(dirname "$0")/stats-endpoints.sh"
# get PORT PATH: one request's ms; the body in $work/body-PORT; fails on anything but 200.
get() {
  local out
  out=$(curl -sS -o "$work/body-$1" -w '%{http_code} %{time_total}' \
    -H "Authorization: Bearer $token" "http://127.0.0.1:$(($1 + 1))$2")
  [ "${out%% *}" = 200 ] || { echo "bench: GET $2 on $1: $out" >&2; exit 1; }
  awk '{ printf "%.1f\n", $2 * 1000 }' <<<"$out"
}
# An answer without the window's own from/to (read at the second of the request).
same='if type == "object" then del(.from, .to) else . end'

printf '%-40s %26s %26s\n' "endpoint ($repeat requests each)" "base first p50 p95" "new first p50 p95"
mapfile -t endpoints < <(stats_endpoints)
for entry in "${endpoints[@]}"; do
  label=${entry%%|*}
  path=${entry#*|}
  : >"$work/base"
  : >"$work/new"
  for _ in $(seq 1 "$repeat"); do
    get 18180 "$path" >>"$work/base"
    get 18190 "$path" >>"$work/new"
  done
  if ! cmp -s <(jq -S "$same" "$work/body-18180") <(jq -S "$same" "$work/body-18190"); then
    echo "bench: the two builds answer $path differently" >&2
    exit 1
  fi
  printf '%-40s %26s %26s\n' "$label" "$(first_and_percentiles <"$work/base")" \
    "$(first_and_percentiles <"$work/new")"
done
