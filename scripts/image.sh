#!/usr/bin/env bash
# Builds the portcullis container image offline with buildah, from scratch: the binary
# (stripped), the shared libraries it links (from ldd), CA certificates and a non-root user.
# No shell, no package manager. Data in /var/lib/portcullis (a volume), configuration from
# PORTCULLIS_* variables or a file named by PORTCULLIS_CONFIG (e.g. /etc/portcullis/portcullis.toml).
#
# usage: scripts/image.sh [BINARY] [OUTPUT.tar]
#   BINARY     default $CARGO_TARGET_DIR/release/portcullis (cargo build --release first)
#   OUTPUT.tar a docker-archive: `docker load -i` or `podman load -i` (default portcullis-image.tar)
#   BUILDAH_ARGS  extra global buildah flags (the tests pass a private --root and --runroot)
#   IMAGE_TAG     default localhost/portcullis:<version>
#   IMAGE_SOURCE  the project's repository address (https://...) for the
#                 org.opencontainers.image.source label; default the workspace's `repository`
#                 in Cargo.toml; without either the label is left out (never a local path)
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-target}/release/portcullis}
OUT=${2:-portcullis-image.tar}
export BUILDAH_FORMAT=docker   # HEALTHCHECK exists only in the docker image format
read -r -a BA <<<"${BUILDAH_ARGS:-}"
[ -x "$BIN" ] || { echo "image.sh: no binary at $BIN (cargo build --release -p portcullis)" >&2; exit 2; }
ver=$("$BIN" --version)                       # portcullis 0.1.0 (commit abc123)
VERSION=$(awk '{print $2}' <<<"$ver")
REVISION=$(sed -n 's/.*commit \([0-9a-f]*\).*/\1/p' <<<"$ver")
SOURCE=${IMAGE_SOURCE:-$(sed -n 's/^repository *= *"\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml" | head -n1)}
case "$SOURCE" in
  ""|https://*) ;;
  *) echo "image.sh: IMAGE_SOURCE must be an https:// address, not $SOURCE" >&2; exit 2 ;;
esac
SOURCE_LABEL=(); [ -n "$SOURCE" ] && SOURCE_LABEL=(--label "org.opencontainers.image.source=$SOURCE")
TAG=${IMAGE_TAG:-localhost/portcullis:$VERSION}
UID_=10001

work=$(mktemp -d); ctr=""
cleanup() { [ -n "$ctr" ] && buildah "${BA[@]}" rm "$ctr" >/dev/null 2>&1; rm -rf "$work"; }
trap cleanup EXIT
root=$work/rootfs
install -D -m 0755 "$BIN" "$root/usr/local/bin/portcullis"
strip "$root/usr/local/bin/portcullis"
for lib in $(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
  install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
done
install -D -m 0644 /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
printf 'root:x:0:0:root:/:/nonexistent\nportcullis:x:%s:%s:portcullis:/var/lib/portcullis:/nonexistent\n' $UID_ $UID_ >"$root/etc/passwd"
printf 'root:x:0:\nportcullis:x:%s:\n' $UID_ >"$root/etc/group"
install -d -m 0700 -o $UID_ -g $UID_ "$root/var/lib/portcullis"
install -d -m 0755 "$root/etc/portcullis"
install -d -m 1777 "$root/tmp"
tar -C "$root" --numeric-owner -cf "$work/rootfs.tar" .

ctr=$(buildah "${BA[@]}" from scratch)
buildah "${BA[@]}" add -q "$ctr" "$work/rootfs.tar" / >/dev/null
buildah "${BA[@]}" config \
  --user $UID_:$UID_ --workingdir /var/lib/portcullis \
  --env PORTCULLIS_LISTEN=0.0.0.0:5000 --env PORTCULLIS_DATA_DIR=/var/lib/portcullis \
  --env PORTCULLIS_LOG__FORMAT=json --env SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt \
  --port 5000 --volume /var/lib/portcullis \
  --entrypoint '["/usr/local/bin/portcullis"]' --cmd serve \
  --healthcheck 'CMD /usr/local/bin/portcullis health' \
  --healthcheck-interval 30s --healthcheck-timeout 10s --healthcheck-start-period 10s --healthcheck-retries 3 \
  --label org.opencontainers.image.title=portcullis \
  --label org.opencontainers.image.description="Container registry gateway with Image Access Management" \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.revision="$REVISION" \
  "${SOURCE_LABEL[@]}" \
  --label org.opencontainers.image.licenses=Apache-2.0 \
  "$ctr"
buildah "${BA[@]}" commit -q --format docker "$ctr" "$TAG" >/dev/null
rm -f "$OUT"
buildah "${BA[@]}" push -q "$TAG" "docker-archive:$OUT:$TAG"
echo "image.sh: $TAG ($VERSION, commit $REVISION) written to $OUT"
