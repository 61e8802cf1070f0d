-- Manual overrides of the publisher catalog: Docker Hub namespace -> badge
-- ('verified_publisher', 'open_source', or 'none' to make a seeded namespace community).
CREATE TABLE publisher_overrides (
    namespace TEXT PRIMARY KEY,
    badge TEXT NOT NULL CHECK (badge IN ('verified_publisher', 'open_source', 'none')),
    updated_by TEXT NOT NULL,
    updated_at INTEGER NOT NULL
);
