-- What the stats API reads (additive only).

-- Each recorded click's tags, one row per tag, written in the click's own transaction: the
-- five tables keep tags only merged per member (ryan_click_demo.last_click_tag), so "clicks by
-- tag" needs them per click. Clicks recorded before this table existed have no rows here.
CREATE TABLE track_click_tags (
    click_id     TEXT    NOT NULL,
    campaign_id  INTEGER NOT NULL,
    tag          TEXT    NOT NULL,
    triggered_at TEXT    NOT NULL,
    PRIMARY KEY (click_id, tag)
) WITHOUT ROWID;
CREATE INDEX idx_track_click_tags_campaign_time
    ON track_click_tags (campaign_id, triggered_at, tag);

-- A campaign's clicks over a time range, by type, from the index alone.
CREATE INDEX idx_cil_campaign_time
    ON component_interaction_logs (campaign_id, triggered_at, interaction_type);
-- A campaign's members (unique count, top members) in line_id order, from the index alone.
CREATE INDEX idx_cil_campaign_member
    ON component_interaction_logs (campaign_id, line_id, triggered_at);
