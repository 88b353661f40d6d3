-- The erasure list (src/store/erase.rs, docs/privacy.md): a hash of each erased uid and when
-- it was erased. A batch drops a click of that uid made before the erasure (one still waiting
-- in a journal). The row '*' is the list's lock row on MySQL; kept here so both stores have
-- the same rows.
CREATE TABLE track_erasures (
    uid_hash  TEXT PRIMARY KEY,
    erased_at TEXT NOT NULL
) WITHOUT ROWID;
INSERT INTO track_erasures (uid_hash, erased_at) VALUES ('*', '0000-00-00 00:00:00.000000');

-- An erasure finds the campaigns a member clicked in the rollups through this index.
CREATE INDEX idx_track_rollup_campaign_members_line_id
    ON track_rollup_campaign_members (line_id);
