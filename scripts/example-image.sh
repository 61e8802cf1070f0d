#!/usr/bin/env bash
# example-image.sh [DIR]: a small runnable image to try the gateway with, built offline: busybox
# (Debian's busybox-static) in an OCI image layout at DIR/layout (tag `app`), and the same image
# as a docker archive at DIR/app.tar. DIR defaults to /tmp/portcullis-example (outside the
# checkout). Needs umoci, busybox-static and skopeo: `sudo apt-get install umoci busybox-static skopeo`.
set -euo pipefail
OUT=${1:-${TMPDIR:-/tmp}/portcullis-example}
mkdir -p "$OUT"
LAYOUT=$OUT/layout; ROOT=$(mktemp -d); trap 'rm -rf "$ROOT"' EXIT
for tool in umoci skopeo; do command -v "$tool" >/dev/null || { echo "example-image: $tool is missing (sudo apt-get install umoci busybox-static skopeo)" >&2; exit 1; }; done
[ -x /bin/busybox ] || { echo "example-image: /bin/busybox is missing (sudo apt-get install busybox-static)" >&2; exit 1; }
[ -f "$LAYOUT/oci-layout" ] || umoci init --layout "$LAYOUT"
umoci rm --image "$LAYOUT:app" 2>/dev/null || true
umoci new --image "$LAYOUT:app"
umoci unpack --rootless --image "$LAYOUT:app" "$ROOT/bundle" >/dev/null
mkdir -p "$ROOT/bundle/rootfs/bin"
cp /bin/busybox "$ROOT/bundle/rootfs/bin/busybox"
ln -sf busybox "$ROOT/bundle/rootfs/bin/sh"
echo "hello from portcullis" >"$ROOT/bundle/rootfs/hello.txt"
umoci repack --image "$LAYOUT:app" "$ROOT/bundle" >/dev/null
umoci config --image "$LAYOUT:app" --config.cmd /bin/busybox --config.cmd cat --config.cmd /hello.txt >/dev/null
rm -f "$OUT/app.tar"
skopeo copy -q "oci:$LAYOUT:app" "docker-archive:$OUT/app.tar:acme/app:1"
echo "example-image: $LAYOUT (tag app) and $OUT/app.tar"
