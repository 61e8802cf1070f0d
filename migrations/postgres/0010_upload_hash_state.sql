-- The running hash of a chunked upload, saved with its size after every write, so that any
-- replica (or this one after a restart) continues the upload without reading it back.
-- One byte naming the algorithm, then the hasher's serialized state.
ALTER TABLE uploads ADD COLUMN hash_state BYTEA;
