-- The packer's sweep sums each hour's member clicks across campaigns, a day of hours at a
-- time (docs/rollups.md "Member packs"): with member_clicks in the index it reads the index
-- alone, not a table row per hour row. It replaces the index on the hour alone (a prefix).
CREATE INDEX idx_track_rollup_hours_hour_sums
    ON track_rollup_hours (hour, campaign_id, member_clicks);
DROP INDEX idx_track_rollup_hours_hour;
