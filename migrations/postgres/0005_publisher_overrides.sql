-- Manual overrides of the publisher catalog: Docker Hub namespace -> badge
-- ('verified_publisher', 'open_source', or 'none' to make a seeded namespace community).
CREATE TABLE publisher_overrides (
    namespace TEXT COLLATE "C" PRIMARY KEY,
    badge TEXT COLLATE "C" NOT NULL CHECK (badge IN ('verified_publisher', 'open_source', 'none')),
    updated_by TEXT COLLATE "C" NOT NULL,
    updated_at BIGINT NOT NULL
);
