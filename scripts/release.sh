#!/usr/bin/env bash
# release.sh [OUT]: everything a release publishes, built offline from this checkout in one
# command, into OUT (default dist/):
#   portcullis-<version>-<arch>-linux.tar.gz   the binary (debug info split out), README, CHANGELOG,
#                                              the systemd unit and its configuration
#   portcullis-<version>-<arch>-linux.debug    the debug info (gdb finds it by the binary's debuglink)
#   portcullis-<version>-image.tar             the container image (docker/podman load -i)
#   SHA256SUMS
# Needs Rust (rust-version in Cargo.toml), binutils (objcopy) and buildah. Prints how long it took.
# Nothing is uploaded: publishing is copying OUT to the release host and pushing the image
# (`skopeo copy docker-archive:OUT/portcullis-<version>-image.tar docker://REGISTRY/portcullis:<version>`).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-dist}
start=$(date +%s)
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}
cargo build --locked --profile release-debug -p portcullis
built=$CARGO_TARGET_DIR/release-debug/portcullis
version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
arch=$(uname -m)
name=portcullis-$version-$arch-linux
mkdir -p "$OUT"
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
mkdir -p "$work/$name"
cp "$built" "$work/$name/portcullis"
objcopy --only-keep-debug "$work/$name/portcullis" "$OUT/$name.debug"
objcopy --strip-debug --add-gnu-debuglink="$OUT/$name.debug" "$work/$name/portcullis"
cp README.md CHANGELOG.md deploy/portcullis.service deploy/portcullis.toml "$work/$name/"
tar -C "$work" -czf "$OUT/$name.tar.gz" "$name"
scripts/image.sh "$work/$name/portcullis" "$OUT/portcullis-$version-image.tar"
(cd "$OUT" && sha256sum "$name.tar.gz" "$name.debug" "portcullis-$version-image.tar" >SHA256SUMS)
ls -l "$OUT"
echo "release.sh: portcullis $version in $OUT, built in $(( $(date +%s) - start )) s"
