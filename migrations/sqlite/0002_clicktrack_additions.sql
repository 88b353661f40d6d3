-- What clicktrack adds to the schema (additive only).

-- Each click's identity: replaying a batch that was already committed changes nothing.
ALTER TABLE component_interaction_logs ADD COLUMN click_id TEXT;
CREATE UNIQUE INDEX uq_component_interaction_logs_click_id
    ON component_interaction_logs (click_id);

-- Requests with a good target whose click could not be recorded, with the reason.
CREATE TABLE track_rejects (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    click_id     TEXT NOT NULL UNIQUE,
    received_at  TEXT NOT NULL,
    reason       TEXT NOT NULL,
    detail       TEXT,
    query_string TEXT NOT NULL,
    user_agent   TEXT
);
CREATE INDEX idx_track_rejects_received_at ON track_rejects (received_at);
CREATE INDEX idx_track_rejects_reason ON track_rejects (reason);
