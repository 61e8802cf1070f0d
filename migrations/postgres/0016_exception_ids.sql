-- Exception ids are never given again after a delete. PostgreSQL's identity column never
-- reuses a value already, so only SQLite's table changes (see sqlite/0016); this version keeps
-- the two numberings the same.
SELECT 1;
