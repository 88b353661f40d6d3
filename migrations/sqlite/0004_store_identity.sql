-- The store's own id, so a journal can tell which store its clicks belong to (a journal
-- refuses to be applied into any other). One row, created on first use.
CREATE TABLE track_store_identity (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    store_id   TEXT NOT NULL,
    created_at TEXT NOT NULL
);
