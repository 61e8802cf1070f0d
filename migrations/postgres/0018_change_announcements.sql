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
-- (A new row cannot make what a replica holds wrong, except a tag, which a push moves.)
CREATE TRIGGER manifests_content AFTER UPDATE OR DELETE ON manifests FOR EACH STATEMENT EXECUTE FUNCTION announce_content();
CREATE TRIGGER tags_content AFTER INSERT OR UPDATE OR DELETE ON tags FOR EACH STATEMENT EXECUTE FUNCTION announce_content();
CREATE TRIGGER repo_blobs_content AFTER UPDATE OR DELETE ON repo_blobs FOR EACH STATEMENT EXECUTE FUNCTION announce_content();
CREATE TRIGGER blobs_content AFTER UPDATE OR DELETE ON blobs FOR EACH STATEMENT EXECUTE FUNCTION announce_content();
CREATE TRIGGER repositories_content AFTER UPDATE OR DELETE ON repositories FOR EACH STATEMENT EXECUTE FUNCTION announce_content();
