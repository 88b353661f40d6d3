-- Rollups: what the statistics read instead of the raw interaction log (docs/rollups.md).
-- Written by the applier in the same transaction as the five tables, so they are exact by
-- construction; the history before them is built by `clicktrack migrate` (backfill).
-- Hours are 'YYYY-MM-DD HH:00:00' in UTC; every count is a sum, so a row only ever grows.

-- Clicks per campaign, hour and interaction type; `member_clicks` are those with a uid
-- (anonymous = clicks - member_clicks); the latest click's time.
CREATE TABLE track_rollup_hours (
    campaign_id      INTEGER NOT NULL,
    hour             TEXT    NOT NULL,
    interaction_type TEXT    NOT NULL,
    clicks           INTEGER NOT NULL,
    member_clicks    INTEGER NOT NULL,
    last_click_at    TEXT    NOT NULL,
    PRIMARY KEY (campaign_id, hour, interaction_type)
) WITHOUT ROWID;

-- Clicks per campaign, hour and target (its first 255 characters, as `target_key`).
CREATE TABLE track_rollup_targets (
    campaign_id INTEGER NOT NULL,
    hour        TEXT    NOT NULL,
    target_key  TEXT    NOT NULL,
    clicks      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, hour, target_key)
) WITHOUT ROWID;

-- Clicks per campaign, hour and tag (a click with two tags counts for both).
CREATE TABLE track_rollup_tags (
    campaign_id INTEGER NOT NULL,
    hour        TEXT    NOT NULL,
    tag         TEXT    NOT NULL,
    clicks      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, hour, tag)
) WITHOUT ROWID;

-- Clicks per campaign, hour and member: unique and top members of any whole-hour window,
-- exactly (a distinct count cannot be summed from coarser rows).
CREATE TABLE track_rollup_members (
    campaign_id INTEGER NOT NULL,
    hour        TEXT    NOT NULL,
    line_id     TEXT    NOT NULL,
    clicks      INTEGER NOT NULL,
    PRIMARY KEY (campaign_id, hour, line_id)
) WITHOUT ROWID;

-- Every member who ever clicked a campaign, once: a new row adds one to the campaign's
-- `unique_members` in the same transaction.
CREATE TABLE track_rollup_campaign_members (
    campaign_id INTEGER NOT NULL,
    line_id     TEXT    NOT NULL,
    PRIMARY KEY (campaign_id, line_id)
) WITHOUT ROWID;

-- The campaign list: distinct members and the latest click, all time.
CREATE TABLE track_rollup_campaigns (
    campaign_id    INTEGER PRIMARY KEY,
    unique_members INTEGER NOT NULL,
    last_click_at  TEXT    NOT NULL
);

-- The backfill's progress: log rows with start_id <= id <= end_id existed before the
-- rollups did and are rolled up by `clicktrack migrate` in id order; next_id is the first
-- not yet done. Rows clicktrack writes later are rolled up as they are written.
-- purged_before: raw rows older than this may be gone (`clicktrack purge`); the statistics
-- read nothing older from the raw log.
CREATE TABLE track_rollup_state (
    id                INTEGER PRIMARY KEY CHECK (id = 1),
    backfill_start_id INTEGER NOT NULL,
    backfill_end_id   INTEGER NOT NULL,
    backfill_next_id  INTEGER NOT NULL,
    purged_before     TEXT,
    updated_at        TEXT    NOT NULL
);
INSERT INTO track_rollup_state (id, backfill_start_id, backfill_end_id, backfill_next_id, updated_at)
SELECT 1, COALESCE(MIN(id), 1), COALESCE(MAX(id), 0), COALESCE(MIN(id), 1),
       strftime('%Y-%m-%d %H:%M:%S', 'now')
FROM component_interaction_logs;

-- Log rows written by another program after the rollups existed (no click_id: the old
-- endpoint, an import), once rolled up: their ids, so none is counted twice.
CREATE TABLE track_rollup_foreign (
    log_id INTEGER PRIMARY KEY
);

-- Members of a window come from track_rollup_members now: the index that served them
-- (0003) only cost the writes (entries at random places, by uid).
DROP INDEX IF EXISTS idx_cil_campaign_member;
