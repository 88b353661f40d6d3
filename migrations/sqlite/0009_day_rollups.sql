-- Day rollups (docs/rollups.md "A window"): the sums of track_rollup_hours, _targets and
-- _tags per campaign and day, written in the same transactions as the hour rows, so a long
-- window reads one row per day where it read 24. Days are 'YYYY-MM-DD 00:00:00' in UTC.
-- Members stay per hour (a distinct count cannot be summed).

CREATE TABLE track_rollup_days (
    campaign_id      INTEGER NOT NULL,
    day              TEXT    NOT NULL,
    interaction_type TEXT    NOT NULL,
    clicks           INTEGER NOT NULL,
    member_clicks    INTEGER NOT NULL,
    last_click_at    TEXT    NOT NULL,
    PRIMARY KEY (campaign_id, day, interaction_type)
) WITHOUT ROWID;

CREATE TABLE track_rollup_day_targets (
    campaign_id INTEGER NOT NULL,
    day         TEXT    NOT NULL,
    target_key  TEXT    NOT NULL,
    clicks      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, day, target_key)
) WITHOUT ROWID;

CREATE TABLE track_rollup_day_tags (
    campaign_id INTEGER NOT NULL,
    day         TEXT    NOT NULL,
    tag         TEXT    NOT NULL,
    clicks      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, day, tag)
) WITHOUT ROWID;

-- The hours rolled up so far, added up per day, in this same transaction (no other writer
-- runs meanwhile). `days_built` tells the statistics that the day rows are complete: on
-- MySQL/MariaDB they are built after the tables exist (src/store/mysql_schema.rs).
INSERT INTO track_rollup_days
SELECT campaign_id, substr(hour, 1, 10) || ' 00:00:00', interaction_type, SUM(clicks),
       SUM(member_clicks), MAX(last_click_at)
FROM track_rollup_hours GROUP BY 1, 2, 3;
INSERT INTO track_rollup_day_targets
SELECT campaign_id, substr(hour, 1, 10) || ' 00:00:00', target_key, SUM(clicks)
FROM track_rollup_targets GROUP BY 1, 2, 3;
INSERT INTO track_rollup_day_tags
SELECT campaign_id, substr(hour, 1, 10) || ' 00:00:00', tag, SUM(clicks)
FROM track_rollup_tags GROUP BY 1, 2, 3;
ALTER TABLE track_rollup_state ADD COLUMN days_built INTEGER NOT NULL DEFAULT 0;
UPDATE track_rollup_state SET days_built = 1;
