-- Member packs (docs/rollups.md "Member packs", src/db/member_pack.rs): a closed hour's
-- members of one campaign as one compact value, so that unique and top members of a long
-- window read a few bytes per member-hour instead of a row. Derived from
-- track_rollup_members by the packer; a pack is used only while its `member_clicks` equal
-- the hour's in track_rollup_hours (a late click makes it stale until it is packed again).

-- Every member who is in a pack, numbered once. An erasure renames the row to the pseudonym.
CREATE TABLE track_rollup_member_ids (
    id      INTEGER PRIMARY KEY,
    line_id TEXT    NOT NULL UNIQUE
);

CREATE TABLE track_rollup_member_packs (
    campaign_id   INTEGER NOT NULL,
    hour          TEXT    NOT NULL,
    member_clicks INTEGER NOT NULL,
    members       INTEGER NOT NULL,
    body          BLOB    NOT NULL,
    PRIMARY KEY (campaign_id, hour)
);

-- The packer sweeps hours across campaigns.
CREATE INDEX idx_track_rollup_hours_hour ON track_rollup_hours (hour);
