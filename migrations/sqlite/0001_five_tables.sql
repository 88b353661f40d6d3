-- The five tables of the production schema (shared/seed, SPEC §2), in SQLite types.
-- IF NOT EXISTS: a database that already has them keeps them and their rows.

CREATE TABLE IF NOT EXISTS campaigns (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL DEFAULT '',
    clicked_count INTEGER DEFAULT 0,
    created_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%S', 'now')),
    updated_at    TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%d %H:%M:%S', 'now'))
);

CREATE TABLE IF NOT EXISTS members (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    line_uid          TEXT NOT NULL UNIQUE,
    line_display_name TEXT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS messages (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    member_id    INTEGER NOT NULL REFERENCES members (id),
    direction    TEXT    NOT NULL,
    message_type TEXT    NOT NULL,
    content      TEXT,
    campaign_id  INTEGER,
    created_at   TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS idx_messages_member_id ON messages (member_id);
CREATE INDEX IF NOT EXISTS idx_messages_campaign_id ON messages (campaign_id);

CREATE TABLE IF NOT EXISTS ryan_click_demo (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    line_id            TEXT    NOT NULL,
    source_campaign_id INTEGER NOT NULL DEFAULT 0,
    line_display_name  TEXT,
    total_clicks       INTEGER NOT NULL DEFAULT 0,
    last_clicked_at    TEXT,
    last_click_tag     TEXT,
    created_at         TEXT    NOT NULL,
    updated_at         TEXT    NOT NULL,
    CONSTRAINT uq_line_source_campaign UNIQUE (line_id, source_campaign_id)
);
CREATE INDEX IF NOT EXISTS idx_source_campaign_id ON ryan_click_demo (source_campaign_id);

-- interaction_type: the set in src/domain/interaction.rs (a test inserts every value).
CREATE TABLE IF NOT EXISTS component_interaction_logs (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    line_id            TEXT    NOT NULL,
    campaign_id        INTEGER NOT NULL REFERENCES campaigns (id) ON DELETE CASCADE,
    template_id        INTEGER,
    carousel_item_id   INTEGER,
    interaction_tag_id INTEGER,
    component_slot     TEXT,
    interaction_type   TEXT    NOT NULL CHECK (interaction_type IN (
        'image_click', 'button_url', 'carousel_click', 'imagemap_click',
        'richmenu_click', 'flex_click', 'text_link')),
    interaction_value  TEXT,
    triggered_at       TEXT    NOT NULL,
    line_event_type    TEXT,
    user_agent         TEXT
);
CREATE INDEX IF NOT EXISTS idx_line_id ON component_interaction_logs (line_id);
CREATE INDEX IF NOT EXISTS idx_campaign_id ON component_interaction_logs (campaign_id);
CREATE INDEX IF NOT EXISTS idx_template_id ON component_interaction_logs (template_id);
CREATE INDEX IF NOT EXISTS idx_interaction_type ON component_interaction_logs (interaction_type);
CREATE INDEX IF NOT EXISTS idx_triggered_at ON component_interaction_logs (triggered_at);
