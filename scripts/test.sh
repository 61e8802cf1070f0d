#!/usr/bin/env bash
# test.sh: everything the tests need, then every test. Installs the Debian packages, starts a
# private containerd and dockerd for the client tests, checks formatting and lints, runs the
# whole workspace's tests (real skopeo, ctr, podman, buildah and docker against the binary).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
export PCL_STATE=${PCL_STATE:-/tmp/pcl-test}
# Snapshots are checked, never rewritten, by the test command (update: INSTA_UPDATE=always).
export INSTA_UPDATE=${INSTA_UPDATE:-no}
scripts/daemons.sh start
trap 'scripts/daemons.sh stop' EXIT
eval "export $(scripts/daemons.sh env)"
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --locked -- -D warnings
log=$(mktemp)
cargo test --workspace --locked 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
awk '/^test result:/ { p += $4; f += $6 } END { printf "%d passed, %d failed\n", p, f }' "$log"
rm -f "$log"
exit "$status"
