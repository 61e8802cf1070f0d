-- Replicas learn of each other's commits at once: every change to what they keep in memory is
-- announced with NOTIFY, which PostgreSQL delivers only when (and if) the transaction commits,
-- in commit order. `pcl_changed` carries what changed: 'directory' (the tables the generation
-- follows: replicas reload their directory and policy) or 'content' (hosted manifests, tags and
-- blob links: replicas drop the hosted content they keep in memory). Identical announcements
-- of one transaction are delivered once. PostgreSQL only: SQLite has one writer, which updates
-- its own memory (so SQLite has no migration 18).
CREATE OR REPLACE FUNCTION bump_generation() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE generation SET value = value + 1;
    PERFORM pg_notify('pcl_changed', 'directory');
    RETURN NULL;
END
$$;
CREATE FUNCTION announce_content() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('pcl_changed', 'content');
    RETURN NULL;
END
$$;
-- Only changes that can make what a replica holds wrong, row by row (a statement trigger would
-- fire for an upsert that changed nothing): a new row cannot, nor can the pull-through cache's
-- bookkeeping of when a tag was checked or a blob used; a tag moved by an upsert can.
CREATE TRIGGER manifests_content AFTER DELETE ON manifests FOR EACH ROW EXECUTE FUNCTION announce_content();
CREATE TRIGGER tags_moved AFTER UPDATE OF digest ON tags FOR EACH ROW WHEN (OLD.digest IS DISTINCT FROM NEW.digest) EXECUTE FUNCTION announce_content();
CREATE TRIGGER tags_content AFTER DELETE ON tags FOR EACH ROW EXECUTE FUNCTION announce_content();
CREATE TRIGGER repo_blobs_content AFTER DELETE ON repo_blobs FOR EACH ROW EXECUTE FUNCTION announce_content();
CREATE TRIGGER blobs_content AFTER DELETE ON blobs FOR EACH ROW EXECUTE FUNCTION announce_content();
CREATE TRIGGER repositories_content AFTER DELETE ON repositories FOR EACH ROW EXECUTE FUNCTION announce_content();
