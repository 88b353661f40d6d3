# The stats endpoints the benchmark times, shared by stats.sh and stats-ab.sh (sourced, with
# $now set): windows end at now, to the second, as the dashboard asks for them.
iso() { date -u -d "@$1" +%Y-%m-%dT%H:%M:%SZ; }
window() { echo "from=$(iso $((now - $1 * 86400)))&to=$(iso $((now + 1)))&bucket=$2"; }
# One "label|path" line per endpoint.
stats_endpoints() {
  printf '%s\n' \
    "campaign list|/api/campaigns" \
    "campaign 1, 7 days by day|/api/campaigns/1/stats?$(window 7 day)" \
    "campaign 1, 7 days by hour|/api/campaigns/1/stats?$(window 7 hour)" \
    "campaign 1, 90 days by day|/api/campaigns/1/stats?$(window 90 day)" \
    "campaign 1, 2 days by hour|/api/campaigns/1/stats?$(window 2 hour)" \
    "campaign 2, 90 days by day|/api/campaigns/2/stats?$(window 90 day)" \
    "campaign 1500 (small), 90 days by day|/api/campaigns/1500/stats?$(window 90 day)" \
    "campaign 1, default window|/api/campaigns/1/stats"
}
# p50 and p95 of the numbers on stdin.
percentiles() {
  sort -n | awk '{ v[NR] = $1 } END { printf "%8.1f %8.1f\n", v[int((NR + 1) / 2)], v[int(NR * 0.95 + 0.999)] }'
}
# The first of the numbers on stdin (one request's time), then their p50 and p95: the first
# request of a window counts its members, the next ones use the count kept for its settled
# hours (docs/rollups.md "Member packs"), so the first is reported on its own.
first_and_percentiles() {
  local all
  all=$(cat)
  printf '%8.1f %s\n' "$(head -1 <<<"$all")" "$(percentiles <<<"$all")"
}
