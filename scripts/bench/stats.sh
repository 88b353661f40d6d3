#!/usr/bin/env bash
# The benchmark's stats step (run it as `scripts/bench.sh --stats [--store sqlite|mysql|postgres]`):
# 10,000,000 interaction-log rows (BENCH_STATS_ROWS) over 90 days: campaign 1 has half of them,
# campaigns 2 and 3 a fifth each, 1,000 small campaigns (1001-2000) the rest; 300,000 members,
# 5 % anonymous clicks, tags on three clicks of four. Log ids follow time, as in a log that
# clicks were appended to (BENCH_STATS_ORDER=scattered: ids in no relation to time, as an
# import in random order would leave them; the slower case for the backfill and the export,
# which read the log by id and by time; PostgreSQL's seed is always in time order). The rows are seeded as the history that predates the
# rollups, then:
#   1. `clicktrack migrate` builds the rollups (the backfill rate);
#   2. every stats endpoint is timed BENCH_STATS_REPEAT times (the first request, p50/p95, ms;
#      target p95 <= 50),
#      and `clicktrack stats` as a command;
#   3. the CSV export of 7 days of campaign 1 and 30 days of campaign 2 (rows/s; target
#      >= 200,000) with clicktrack's peak RSS after each (constant memory);
#   4. the redirects (wrk, 50 connections, BENCH_DURATION s) alone and while `clicktrack
#      purge` deletes the oldest 30 days: req/s and p99 (a purge must not move them), and the
#      rows the purge deleted meanwhile (it is stopped when the load ends);
#   5. the apply rate at that size (examples/apply_ceiling, 200,000 clicks in batches of
#      4,096, fresh and replayed), beside the same on an empty database in the same run.
# BENCH_INNODB_BUFFER_POOL_MB=N (MySQL) sets the server's buffer pool for the run and puts it
# back afterwards. BENCH_MYSQL_SERVER / BENCH_POSTGRES_SERVER name the servers (USER@HOST:PORT).
set -euo pipefail
cd "$(dirname "$0")/../.."
store="${1:-sqlite}"
case "$store" in
  sqlite|mysql|postgres) ;;
  *) echo "bench --stats: --store is sqlite, mysql or postgres" >&2; exit 2 ;;
esac
rows="${BENCH_STATS_ROWS:-10000000}"
repeat="${BENCH_STATS_REPEAT:-20}"
port="${BENCH_PORT:-18080}"
admin_port=$((port + 1))
mysql_server="${BENCH_MYSQL_SERVER:-root@127.0.0.1:3306}"
postgres_server="${BENCH_POSTGRES_SERVER:-postgres@127.0.0.1:5432}"
token="bench-stats-token-0123456789"

cargo build --release --quiet --bin clicktrack --example apply_ceiling
bin=target/release/clicktrack
work=$(mktemp -d)
pid=""
pool_before=""
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  [ -z "$pool_before" ] || mysql_cli -e "SET GLOBAL innodb_buffer_pool_size = $pool_before"
  wait 2>/dev/null || true
  [ -z "${BENCH_KEEP:-}" ] || cp -r "$work" "$BENCH_KEEP"
  rm -rf "$work"
  # BENCH_KEEP also keeps the MySQL/PostgreSQL database of the run (clicktrack_bench_stats)
  # for a look at its plans; the next run drops it.
  if [ -z "${BENCH_KEEP:-}" ]; then drop_databases; else drop_databases empty; fi
}
# drop_databases [empty]: both databases of the run, or only the empty one.
drop_databases() {
  local names="clicktrack_bench_stats clicktrack_bench_empty" d
  [ "${1:-}" != empty ] || names="clicktrack_bench_empty"
  for d in $names; do
    case "$store" in
      mysql) mysql_cli -e "DROP DATABASE IF EXISTS $d" ;;
      postgres) pg_cli -d postgres -c "DROP DATABASE IF EXISTS $d WITH (FORCE)" >/dev/null ;;
    esac
  done
}
trap cleanup EXIT

now=$(date +%s)
days=90
start=$((now - days * 86400))
step=$(awk -v r="$rows" -v d="$days" 'BEGIN { printf "%.6f", d * 86400 / r }')
# n = 0 .. 10^7 - 1 from seven tables of digits (portable: no generate_series, no seq engine).
digits="(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
  UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
numbers="(SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d + 1000000*h.d AS n
  FROM $digits a, $digits b, $digits c, $digits e, $digits f, $digits g, $digits h) s"
ua="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.9.0"
types="'image_click','button_url','carousel_click','imagemap_click','richmenu_click','flex_click','text_link'"
# Campaign of row n: 5/10 campaign 1, 2/10 campaign 2, 2/10 campaign 3, 1/10 the small ones
# (integer division: `/` on SQLite, `DIV` on MySQL).
campaign() {
  echo "CASE WHEN n % 10 < 5 THEN 1 WHEN n % 10 < 7 THEN 2 WHEN n % 10 < 9 THEN 3
    ELSE 1001 + (n $1 10) % 1000 END"
}

if [ "$store" = sqlite ]; then
  command -v sqlite3 >/dev/null || { echo "bench: needs sqlite3 (apt-get install sqlite3)" >&2; exit 1; }
  db_url="sqlite://$work/stats.db"
  empty_url="sqlite://$work/empty.db"
  # A page cache the seed's indexes fit in, and no fsync: the seed is not what is measured.
  q() { sqlite3 "$work/stats.db" "PRAGMA cache_size = -2000000; PRAGMA synchronous = OFF; $1"; }
  uid="printf('U%032x', (n * 7919) % 300000)"
  at="strftime('%Y-%m-%d %H:%M:%S', $start + n * $step, 'unixepoch')"
  kind="CASE n % 7 WHEN 0 THEN 'image_click' WHEN 1 THEN 'button_url' WHEN 2 THEN 'carousel_click'
    WHEN 3 THEN 'imagemap_click' WHEN 4 THEN 'richmenu_click' WHEN 5 THEN 'flex_click' ELSE 'text_link' END"
  target="'https://hotel.example.com/offer/' || (n * 31 % 40)"
  click_id="printf('%08x-0000-7000-8000-%012x', n, n)"
  tag="CASE id % 3 WHEN 0 THEN 'vip' WHEN 1 THEN 'spring' ELSE 'spa' END"
  name="'campaign ' || n"
  campaign=$(campaign /)
elif [ "$store" = postgres ]; then
  pg_user="${postgres_server%%@*}"
  pg_host="${postgres_server#*@}"
  pg_cli() { PGOPTIONS="-c client_min_messages=warning" psql -X -q -v ON_ERROR_STOP=1 -tA --user="$pg_user" --host="${pg_host%%:*}" --port="${pg_host##*:}" "$@"; }
  drop_databases
  for d in clicktrack_bench_stats clicktrack_bench_empty; do pg_cli -d postgres -c "CREATE DATABASE $d"; done
  db_url="postgres://$postgres_server/clicktrack_bench_stats"
  empty_url="postgres://$postgres_server/clicktrack_bench_empty"
  q() { pg_cli -d clicktrack_bench_stats -c "$1"; }
  uid="'U' || lpad(to_hex((n * 7919) % 300000), 32, '0')"
  at="to_timestamp(floor($start + n * $step)) AT TIME ZONE 'UTC'"
  kind="(ARRAY[$types])[1 + n % 7]"
  target="'https://hotel.example.com/offer/' || (n * 31 % 40)"
  click_id="lpad(to_hex(n), 8, '0') || '-0000-7000-8000-' || lpad(to_hex(n), 12, '0')"
  tag="(ARRAY['vip', 'spring', 'spa'])[1 + id % 3]"
  name="'campaign ' || n"
  campaign=$(campaign /)
  # 64-bit arithmetic (n * 7919 overflows PostgreSQL's integer).
  numbers="generate_series(0::bigint, $rows - 1) AS s(n)"
else
  mysql_user="${mysql_server%%@*}"
  mysql_host="${mysql_server#*@}"
  mysql_cli() { mariadb --user="$mysql_user" --host="${mysql_host%%:*}" --port="${mysql_host##*:}" -N "$@"; }
  mysql_cli -e "DROP DATABASE IF EXISTS clicktrack_bench_stats; CREATE DATABASE clicktrack_bench_stats;
    DROP DATABASE IF EXISTS clicktrack_bench_empty; CREATE DATABASE clicktrack_bench_empty"
  if [ -n "${BENCH_INNODB_BUFFER_POOL_MB:-}" ]; then
    pool_before=$(mysql_cli -e "SELECT @@innodb_buffer_pool_size")
    mysql_cli -e "SET GLOBAL innodb_buffer_pool_size = ${BENCH_INNODB_BUFFER_POOL_MB} * 1048576"
  fi
  db_url="mysql://$mysql_server/clicktrack_bench_stats"
  empty_url="mysql://$mysql_server/clicktrack_bench_empty"
  q() { mysql_cli clicktrack_bench_stats -e "$1"; }
  uid="CONCAT('U', LPAD(HEX((n * 7919) % 300000), 32, '0'))"
  at="FROM_UNIXTIME($start + n * $step)"
  kind="ELT(1 + n % 7, $types)"
  target="CONCAT('https://hotel.example.com/offer/', n * 31 % 40)"
  click_id="CONCAT(LPAD(HEX(n), 8, '0'), '-0000-7000-8000-', LPAD(HEX(n), 12, '0'))"
  tag="ELT(1 + id % 3, 'vip', 'spring', 'spa')"
  name="CONCAT('campaign ', n)"
  campaign=$(campaign DIV)
fi
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
# Nothing may answer on the ports before `serve` starts: another process there would be
# measured instead of it.
ports_free() {
  local p
  for p in "$port" "$admin_port"; do
    if curl -s -o /dev/null "http://127.0.0.1:$p/"; then
      echo "bench: something already answers on 127.0.0.1:$p (BENCH_PORT sets the ports)" >&2
      exit 1
    fi
  done
}
# Until the `serve` just started ($pid) is ready.
wait_ready() {
  for _ in $(seq 1 200); do curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/readyz" 2>/dev/null && break; sleep 0.05; done
  kill -0 "$pid" 2>/dev/null || {
    echo "bench: clicktrack serve exited (ports $port and $admin_port free?): $(tail -3 "$work/serve.log")" >&2
    exit 1
  }
}

"$bin" migrate --database-url "$db_url" --log-format json >/dev/null
seed_started=$(date +%s%N)
q "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at)
   SELECT n, $name, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00'
   FROM (SELECT a.d + 10 * b.d + 100 * c.d + 1000 * e.d AS n
         FROM $digits a, $digits b, $digits c, $digits e) s
   WHERE n IN (1, 2, 3, 123, 456, 789) OR n BETWEEN 1001 AND 2000"
# Row n's time grows with n; the join of digit tables yields n in no useful order, so unless
# the scattered order is asked for, the numbers are first put in a table of their own and read
# back by its primary key (ascending, without a sort of the wide rows).
if [ "${BENCH_STATS_ORDER:-time}" != scattered ] && [ "$store" != postgres ]; then
  q "CREATE TABLE bench_numbers (n INTEGER NOT NULL PRIMARY KEY)"
  q "INSERT INTO bench_numbers (n) SELECT n FROM $numbers WHERE n < $rows"
  numbers="bench_numbers"
  in_order="ORDER BY n"
else
  in_order=""
fi
q "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type,
     interaction_value, triggered_at, user_agent, click_id)
   SELECT CASE WHEN n % 20 = 7 THEN '' ELSE $uid END, $campaign,
     $kind, $target, $at, '$ua', $click_id
   FROM $numbers WHERE n < $rows $in_order"
[ "$numbers" != bench_numbers ] || q "DROP TABLE bench_numbers"
q "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at)
   SELECT click_id, campaign_id, $tag, triggered_at FROM component_interaction_logs WHERE id % 4 <> 0"
q "UPDATE campaigns SET clicked_count =
   (SELECT COUNT(*) FROM component_interaction_logs l WHERE l.campaign_id = campaigns.id)"
# The seeded rows play the history that predates the rollups, as `migrate` records it when it
# creates them on a database that already has clicks.
q "UPDATE track_rollup_state SET
     backfill_start_id = (SELECT MIN(id) FROM component_interaction_logs),
     backfill_end_id = (SELECT MAX(id) FROM component_interaction_logs),
     backfill_next_id = (SELECT MIN(id) FROM component_interaction_logs) WHERE id = 1"
case "$store" in
  sqlite) q "ANALYZE" ;;
  mysql) q "ANALYZE TABLE component_interaction_logs, track_click_tags" >/dev/null ;;
  postgres) q "VACUUM ANALYZE component_interaction_logs, track_click_tags, campaigns" ;;
esac
logs=$(q "SELECT COUNT(*) FROM component_interaction_logs")
order="ids in time order"
[ "$store" = postgres ] || [ "${BENCH_STATS_ORDER:-time}" != scattered ] || order="ids scattered in time"
echo "clicktrack stats benchmark: store $store; $logs interaction-log rows over $days days ($order), seeded in $(( $(ms_since "$seed_started") / 1000 )) s"
for id in 1 2 3 1500; do
  echo "  campaign $id: $(q "SELECT clicked_count FROM campaigns WHERE id = $id") rows"
done
echo "  $(q "SELECT COUNT(*) FROM track_click_tags") tag rows, $(q "SELECT COUNT(DISTINCT line_id) FROM component_interaction_logs") members"
if [ "$store" = mysql ]; then
  echo "  innodb_buffer_pool_size: $(q "SELECT @@innodb_buffer_pool_size DIV 1048576") MiB"
fi

echo
backfill_started=$(date +%s%N)
"$bin" migrate --database-url "$db_url" --log-format json 2>"$work/migrate.log" | tail -2
backfill_ms=$(ms_since "$backfill_started")
echo "backfill (with the member packs): $logs rows in $((backfill_ms / 1000)).$(( backfill_ms % 1000 / 100 )) s = $(( logs * 1000 / backfill_ms )) rows/s (target >= 100,000)"
for table in hours targets tags days day_targets day_tags members campaign_members member_packs member_ids; do
  printf '  track_rollup_%-17s %10s rows\n' "$table" "$(q "SELECT COUNT(*) FROM track_rollup_$table")"
done

# The seed and the backfill leave gigabytes of dirty pages: written back while the endpoints
# and the export are timed, they would time the disk, not clicktrack's reads.
sync
ports_free
"$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" \
  --database-url "$db_url" --spool-path "$work/spool.db" --admin-token "$token" \
  --log-format json 2>"$work/serve.log" &
pid=$!
wait_ready

# shellcheck source=scripts/bench/stats-endpoints.sh
. scripts/bench/stats-endpoints.sh
# get PATH -> "total_ms bytes first_byte_ms"; fails on anything but 200.
get() {
  local out
  if ! out=$(curl -sS -o "$work/body" -w '%{http_code} %{time_total} %{size_download} %{time_starttransfer}' \
      -H "Authorization: Bearer $token" "http://127.0.0.1:$admin_port$1") \
    || [ "${out%% *}" != 200 ]; then
    echo "bench: GET $1 failed: $out $(head -c 500 "$work/body")" >&2
    tail -5 "$work/serve.log" >&2
    return 1
  fi
  awk '{ printf "%.1f %d %.1f\n", $2 * 1000, $3, $4 * 1000 }' <<<"$out"
}
echo
printf '%-46s %8s %8s %8s\n' "endpoint ($repeat requests each)" first_ms p50_ms p95_ms
worst=0
mapfile -t endpoints < <(stats_endpoints)
for entry in "${endpoints[@]}"; do
  label=${entry%%|*}
  path=${entry#*|}
  line=$(for _ in $(seq 1 "$repeat"); do get "$path" | cut -d' ' -f1; done | first_and_percentiles)
  printf '%-46s %s\n' "$label" "$line"
  p95=${line##* }
  worst=$(awk -v a="$worst" -v b="$p95" 'BEGIN { print (b > a) ? b : a }')
done
echo "slowest p95: $worst ms (target: 50)"
for args in "" "--campaign 1 --since 7d"; do
  line=$(for _ in $(seq 1 5); do
    t=$(date +%s%N)
    # shellcheck disable=SC2086
    "$bin" stats $args --database-url "$db_url" >/dev/null
    echo "$(( ($(date +%s%N) - t) / 100000 ))" | awk '{ print $1 / 10 }'
  done | percentiles)
  printf '%-46s %s\n' "clicktrack stats $args (5 runs, whole process)" "$line"
done

hwm() { awk '/^VmHWM:/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
echo
echo "CSV export, clicktrack peak RSS before: $(hwm) MiB"
for entry in "1|7" "2|30"; do
  id=${entry%|*}
  span=${entry#*|}
  result=$(get "/api/campaigns/$id/clicks.csv?from=$(iso $((now - span * 86400)))&to=$(iso $((now + 1)))")
  read -r ms bytes first <<<"$result"
  lines=$(($(wc -l <"$work/body") - 1))
  printf 'campaign %s, %2s days: %8d rows %5d MiB in %7.0f ms = %7d rows/s (first byte %4.0f ms), peak RSS after: %d MiB\n' \
    "$id" "$span" "$lines" $((bytes / 1048576)) "$ms" "$(awk -v l="$lines" -v m="$ms" 'BEGIN { printf "%d", l * 1000 / m }')" "$first" "$(hwm)"
done
kill -TERM "$pid"
wait "$pid" || true
pid=""

# 4. The redirects while a purge runs: wrk at 50 connections (the seed's mix) for
#    BENCH_DURATION seconds, then again while `clicktrack purge` deletes the oldest 30 days.
duration="${BENCH_DURATION:-10}"
ports_free
"$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" \
  --database-url "$db_url" --spool-path "$work/spool.db" --allow-host example.com \
  --log-format json 2>"$work/serve.log" &
pid=$!
wait_ready
p99() { awk '$1 == "99%" { print $2 }' <<<"$1"; }
rate() { awk '/^Requests\/sec/ { printf "%d", $2 }' <<<"$1"; }
echo
echo "redirects at 50 connections, ${duration}s each (wrk -t1, the seed's mix):"
out=$(wrk -t1 -c50 -d"${duration}s" --latency -s scripts/bench/mix.lua "http://127.0.0.1:$port" 2>&1)
echo "  without a purge: $(rate "$out") req/s, p99 $(p99 "$out")"
purge_before=$(iso $((start + 30 * 86400)))
old_rows() {
  q "SELECT COUNT(*) FROM component_interaction_logs
     WHERE triggered_at < '$(date -u -d "@$((start + 30 * 86400))" '+%Y-%m-%d %H:%M:%S')'"
}
old_before=$(old_rows)
purge_started=$(date +%s%N)
"$bin" purge --before "$purge_before" --database-url "$db_url" --log-format json \
  >"$work/purge.out" 2>"$work/purge.log" &
purge_pid=$!
out=$(wrk -t1 -c50 -d"${duration}s" --latency -s scripts/bench/mix.lua "http://127.0.0.1:$port" 2>&1)
echo "  during a purge:  $(rate "$out") req/s, p99 $(p99 "$out")"
# The purge is stopped once the load is measured (each step is its own transaction, so it
# stops cleanly; a whole 30 days of 10,000,000 rows would take many minutes).
kill "$purge_pid" 2>/dev/null || true
wait "$purge_pid" 2>/dev/null || true
purge_ms=$(ms_since "$purge_started")
deleted=$((old_before - $(old_rows)))
echo "  purge (stopped after the load): $deleted log rows deleted in $((purge_ms / 1000)) s, $((deleted * 1000 / purge_ms)) rows/s, catching up on the rollups first"
kill -TERM "$pid"
wait "$pid" || true
pid=""

echo
echo "apply rate (examples/apply_ceiling, 200,000 clicks, batches of 4,096), empty database, then at $logs rows:"
"$bin" migrate --database-url "$empty_url" --log-format json >/dev/null
"$bin" campaign add --id 123 --name a --database-url "$empty_url" --log-format json >/dev/null
"$bin" campaign add --id 456 --name b --database-url "$empty_url" --log-format json >/dev/null
"$bin" campaign add --id 789 --name c --database-url "$empty_url" --log-format json >/dev/null
# fresh: clicks the applier appended and reads for the first time (no id lookup); replayed:
# a journal found at start, ids looked up.
for seen in fresh replayed; do
  echo "  empty:      $(target/release/examples/apply_ceiling "$empty_url" 200000 4096 "$seen")"
  echo "  at size:    $(target/release/examples/apply_ceiling "$db_url" 200000 4096 "$seen")"
done
