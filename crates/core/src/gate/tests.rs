//! Unit tests of the gate on the in-memory stores.
