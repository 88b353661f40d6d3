#!/usr/bin/env bash
# The benchmark's stats step (run it as `scripts/bench.sh --stats [--store sqlite|mysql]`):
# 1,000,000 interaction-log rows (BENCH_STATS_ROWS) over 30 days and 20 campaigns, half of
# them in campaign 1, with 50,000 members, tags, members and summaries; then every stats
# endpoint is timed three times (ms; the target is under 1,000 each), and the CSV export of a
# small and of the big campaign is timed with clicktrack's peak RSS after each: the export
# streams, so exporting 500,000 rows must not raise the peak much over exporting 26,000.
# BENCH_INNODB_BUFFER_POOL_MB=1024 (MySQL) sets the server's buffer pool for the run and puts
# it back afterwards: the default 128 MiB does not hold the ~850 MiB of table and indexes.
set -euo pipefail
cd "$(dirname "$0")/../.."
store="${1:-sqlite}"
rows="${BENCH_STATS_ROWS:-1000000}"
port="${BENCH_PORT:-18080}"
admin_port=$((port + 1))
mysql_server="${BENCH_MYSQL_SERVER:-root@127.0.0.1:3306}"
token="bench-stats-token-0123456789"

cargo build --release --quiet --bin clicktrack
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
}
trap cleanup EXIT

now=$(date +%s)
start=$((now - 30 * 86400))
step=$(awk -v r="$rows" 'BEGIN { printf "%.6f", 30 * 86400 / r }')
# n = 0 .. 10^6 - 1 from six tables of digits (portable: no generate_series, no seq engine).
digits="(SELECT 0 AS d UNION ALL SELECT 1 UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4
  UNION ALL SELECT 5 UNION ALL SELECT 6 UNION ALL SELECT 7 UNION ALL SELECT 8 UNION ALL SELECT 9)"
numbers="(SELECT a.d + 10*b.d + 100*c.d + 1000*e.d + 10000*f.d + 100000*g.d AS n
  FROM $digits a, $digits b, $digits c, $digits e, $digits f, $digits g) s"
ua="Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Safari Line/14.9.0"
types="'image_click','button_url','carousel_click','imagemap_click','richmenu_click','flex_click','text_link'"

if [ "$store" = sqlite ]; then
  db_url="sqlite://$work/stats.db"
  q() { sqlite3 "$work/stats.db" "$1"; }
  uid="printf('U%032x', (n * 7919) % 50000)"
  at="strftime('%Y-%m-%d %H:%M:%S', $start + n * $step, 'unixepoch')"
  kind="CASE n % 7 WHEN 0 THEN 'image_click' WHEN 1 THEN 'button_url' WHEN 2 THEN 'carousel_click'
    WHEN 3 THEN 'imagemap_click' WHEN 4 THEN 'richmenu_click' WHEN 5 THEN 'flex_click' ELSE 'text_link' END"
  target="'https://hotel.example.com/offer/' || (n * 31 % 40)"
  click_id="printf('%08x-0000-7000-8000-%012x', n, n)"
  tag="CASE id % 3 WHEN 0 THEN 'vip' WHEN 1 THEN 'spring' ELSE 'spa' END"
  ignore="INSERT OR IGNORE"
  name="'campaign ' || (n + 1)"
else
  mysql_user="${mysql_server%%@*}"
  mysql_host="${mysql_server#*@}"
  mysql_cli() { mariadb --user="$mysql_user" --host="${mysql_host%%:*}" --port="${mysql_host##*:}" -N "$@"; }
  mysql_cli -e "DROP DATABASE IF EXISTS clicktrack_bench_stats; CREATE DATABASE clicktrack_bench_stats"
  # BENCH_INNODB_BUFFER_POOL_MB=1024: a buffer pool the data fits in, for this run only.
  if [ -n "${BENCH_INNODB_BUFFER_POOL_MB:-}" ]; then
    pool_before=$(mysql_cli -e "SELECT @@innodb_buffer_pool_size")
    mysql_cli -e "SET GLOBAL innodb_buffer_pool_size = ${BENCH_INNODB_BUFFER_POOL_MB} * 1048576"
  fi
  db_url="mysql://$mysql_server/clicktrack_bench_stats"
  q() { mysql_cli clicktrack_bench_stats -e "$1"; }
  uid="CONCAT('U', LPAD(HEX((n * 7919) % 50000), 32, '0'))"
  at="FROM_UNIXTIME($start + n * $step)"
  kind="ELT(1 + n % 7, $types)"
  target="CONCAT('https://hotel.example.com/offer/', n * 31 % 40)"
  click_id="CONCAT(LPAD(HEX(n), 8, '0'), '-0000-7000-8000-', LPAD(HEX(n), 12, '0'))"
  tag="ELT(1 + id % 3, 'vip', 'spring', 'spa')"
  ignore="INSERT IGNORE"
  name="CONCAT('campaign ', n + 1)"
fi

"$bin" migrate --database-url "$db_url" --log-format json >/dev/null
seed_started=$(date +%s)
q "INSERT INTO campaigns (id, name, clicked_count, created_at, updated_at)
   SELECT n + 1, $name, 0, '2026-01-01 00:00:00', '2026-01-01 00:00:00'
   FROM (SELECT a.d + 10 * b.d AS n FROM $digits a, $digits b) s WHERE n < 20"
q "INSERT INTO component_interaction_logs (line_id, campaign_id, interaction_type,
     interaction_value, triggered_at, user_agent, click_id)
   SELECT CASE WHEN n % 20 = 0 THEN '' ELSE $uid END,
     CASE WHEN n % 2 = 0 THEN 1 ELSE 2 + n % 19 END,
     $kind, $target, $at, '$ua', $click_id
   FROM $numbers WHERE n < $rows"
q "INSERT INTO track_click_tags (click_id, campaign_id, tag, triggered_at)
   SELECT click_id, campaign_id, $tag, triggered_at FROM component_interaction_logs WHERE id % 4 <> 0"
q "$ignore INTO track_click_tags (click_id, campaign_id, tag, triggered_at)
   SELECT click_id, campaign_id, 'promo', triggered_at FROM component_interaction_logs WHERE id % 5 = 0"
q "UPDATE campaigns SET clicked_count =
   (SELECT COUNT(*) FROM component_interaction_logs l WHERE l.campaign_id = campaigns.id)"
q "INSERT INTO members (line_uid, line_display_name, created_at, updated_at)
   SELECT DISTINCT line_id, 'Guest', '2026-01-01 00:00:00', '2026-01-01 00:00:00'
   FROM component_interaction_logs WHERE line_id <> ''"
q "INSERT INTO ryan_click_demo (line_id, source_campaign_id, total_clicks, last_clicked_at,
     last_click_tag, created_at, updated_at)
   SELECT line_id, 0, COUNT(*), MAX(triggered_at), 'vip,spring,spa', MIN(triggered_at), MAX(triggered_at)
   FROM component_interaction_logs WHERE line_id <> '' GROUP BY line_id"
if [ "$store" = sqlite ]; then q "ANALYZE"; else q "ANALYZE TABLE component_interaction_logs, track_click_tags" >/dev/null; fi
logs=$(q "SELECT COUNT(*) FROM component_interaction_logs")
big=$(q "SELECT COUNT(*) FROM component_interaction_logs WHERE campaign_id = 1")
small=$(q "SELECT COUNT(*) FROM component_interaction_logs WHERE campaign_id = 7")
tags=$(q "SELECT COUNT(*) FROM track_click_tags")
member=$(q "SELECT line_id FROM component_interaction_logs WHERE line_id <> '' LIMIT 1")
echo "clicktrack stats benchmark: store $store; $logs interaction-log rows over 30 days"
echo "  (campaign 1: $big rows, campaign 7: $small rows), $tags tag rows; seeded in $(( $(date +%s) - seed_started )) s"
if [ "$store" = mysql ]; then
  # After a bulk load InnoDB keeps flushing dirty pages and purging for a while; measuring
  # during that measures the load. Wait (at most 5 min) until the flushing is done.
  for _ in $(seq 1 600); do
    dirty=$(q "SELECT variable_value FROM information_schema.global_status
               WHERE variable_name = 'INNODB_BUFFER_POOL_PAGES_DIRTY'")
    [ "${dirty:-0}" -gt 100 ] || break
    sleep 0.5
  done
  # With the default 128 MiB the tables and indexes (~850 MiB) do not fit: reads hit the disk.
  echo "  innodb_buffer_pool_size: $(q "SELECT @@innodb_buffer_pool_size DIV 1048576") MiB, dirty pages left: $dirty"
fi

"$bin" serve --listen "127.0.0.1:$port" --admin-listen "127.0.0.1:$admin_port" \
  --database-url "$db_url" --spool-path "$work/spool.db" --admin-token "$token" \
  --log-format json 2>"$work/serve.log" &
pid=$!
for _ in $(seq 1 200); do curl -fsS -o /dev/null "http://127.0.0.1:$admin_port/readyz" 2>/dev/null && break; sleep 0.05; done

iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
month="from=$(iso "$start")&to=$(iso $((now + 1)))"
two_days="from=$(iso $((now - 2 * 86400)))&to=$(iso $((now + 1)))&bucket=hour"
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
  awk '{ printf "%d %d %d\n", $2 * 1000, $3, $4 * 1000 }' <<<"$out"
}
printf '%-44s %8s %8s %8s\n' endpoint "1st_ms" "2nd_ms" "3rd_ms"
slowest=0
for path in \
  "/api/campaigns" \
  "/api/campaigns/1/stats?$month" \
  "/api/campaigns/1/stats" \
  "/api/campaigns/1/stats?$two_days" \
  "/api/campaigns/7/stats?$month" \
  "/api/members/$member/clicks"; do
  times=()
  for _ in 1 2 3; do
    result=$(get "$path")
    read -r ms _rest <<<"$result"
    times+=("$ms")
    [ "$ms" -le "$slowest" ] || slowest=$ms
  done
  label=${path//$month/30 days}
  label=${label//$two_days/2 days by hour}
  label=${label//$member/<uid>}
  printf '%-44s %8s %8s %8s\n' "$label" "${times[@]}"
done
echo "slowest: $slowest ms (target: under 1000)"

hwm() { awk '/^VmHWM:/ {printf "%d", $2 / 1024}' "/proc/$pid/status"; }
echo
echo "CSV export (30 days), clicktrack peak RSS before: $(hwm) MiB"
for id in 7 1; do
  result=$(get "/api/campaigns/$id/clicks.csv?$month")
  read -r ms bytes first <<<"$result"
  lines=$(($(wc -l <"$work/body") - 1))
  printf 'campaign %-2s %8d rows %6d MiB  first byte %5d ms, all %6d ms  peak RSS after: %d MiB\n' \
    "$id" "$lines" $((bytes / 1048576)) "$first" "$ms" "$(hwm)"
done
kill -TERM "$pid"
wait "$pid" || true
pid=""
