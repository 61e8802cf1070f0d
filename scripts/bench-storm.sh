#!/usr/bin/env bash
# bench-storm.sh: a pull storm (the `storm` part of bench.sh, or alone). CLIENTS (32) clients pull
# one cold 3-layer image (LAYER_MIB each, 16 by default) at the same moment, each as a real client
# does — a token, the manifest, the config and every layer, checked against its digest — through
#   portcullis   two replicas on one PostgreSQL database (scripts/daemons.sh) and one S3 bucket
#                (moto), behind nginx, each proxying docker.io from the peer registry, and
#   distribution the peer's pull-through proxy of the same registry,
# both fetching through a counting nginx in front of the peer registry; then the same again warm.
#   storm_upstream_over_image.cold   blob bytes fetched upstream / the image's blob bytes (target 1)
#   storm_MBps.cold / .warm          all clients' bytes / the storm's wall time
#   storm_slowest_s.cold / .warm     the slowest client's time
# and the floor of the replicas' side: the same clients reading the same blobs straight from the
# bucket (moto, a Python stand-in for S3, which bounds what replicas on it can serve on one machine).
# Every client's bytes must match the digests (a mismatch fails the run).
# Env: BIN, PORT, ADMIN_PW, OUT, ROUNDS, CLIENTS, LAYER_MIB, PEER (the peer registry, 127.0.0.1:5000).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=$(realpath "${BIN:?the portcullis binary}"); PORT=${PORT:-7000}; ADMIN_PW=${ADMIN_PW:-bench-admin-password}
STATE=${PEER_STATE:-/tmp/portcullis-peer}/storm; OUT=${OUT:-/dev/null}; ROUNDS=${ROUNDS:-2}
CLIENTS=${CLIENTS:-32}; LAYER_MIB=${LAYER_MIB:-16}; PEER=${PEER:-127.0.0.1:5000}
R1=127.0.0.1:$((PORT + 51)); R2=127.0.0.1:$((PORT + 52)); LB=127.0.0.1:$((PORT + 53))
UP_GW=127.0.0.1:$((PORT + 54)); UP_DIST=127.0.0.1:$((PORT + 55)); DIST=127.0.0.1:$((PORT + 56))
say() { echo "RESULT $*" | tee -a "$OUT"; }
rm -rf "$STATE"; mkdir -p "$STATE/lb" "$STATE/up"
PIDS=()
cleanup() {
  kill "${PIDS[@]}" 2>/dev/null || true
  nginx -p "$STATE/lb" -c "$STATE/lb/nginx.conf" -s stop 2>/dev/null || true
  nginx -p "$STATE/up" -c "$STATE/up/nginx.conf" -s stop 2>/dev/null || true
  [ -n "${DB:-}" ] && psql -q "$PCL_TEST_POSTGRES_URL" -c "DROP DATABASE IF EXISTS $DB WITH (FORCE)" 2>/dev/null || true
}
trap cleanup EXIT
scripts/daemons.sh start >/dev/null; eval "export $(scripts/daemons.sh env)"

# the counting nginx in front of the peer registry: one port (and log of body bytes) per puller
cat >"$STATE/up/nginx.conf" <<NGINX
pid $STATE/up/nginx.pid; error_log $STATE/up/error.log; worker_processes 1;
events { worker_connections 1024; }
http { log_format bytes '\$request_method \$uri \$status \$body_bytes_sent';
  client_body_temp_path $STATE/up/body; proxy_temp_path $STATE/up/proxy;
  proxy_buffering off; proxy_http_version 1.1;
  server { listen $UP_GW; access_log $STATE/up/gw.log bytes; location / { proxy_pass http://$PEER; proxy_set_header Host \$http_host; } }
  server { listen $UP_DIST; access_log $STATE/up/dist.log bytes; location / { proxy_pass http://$PEER; proxy_set_header Host \$http_host; } } }
NGINX
nginx -p "$STATE/up" -c "$STATE/up/nginx.conf"
upstream_bytes() { awk '$2 ~ /\/blobs\// && $3 == 200 {s += $4} END {printf "%.0f\n", s}' "$STATE/up/$1.log"; }

# two replicas on PostgreSQL + S3, behind nginx
DB=pcl_storm_$$; psql -q "$PCL_TEST_POSTGRES_URL" -c "CREATE DATABASE $DB"
BUCKET=storm-$$; curl -sf -X PUT "$PCL_TEST_S3_ENDPOINT/$BUCKET" >/dev/null
replica() { # listen
  PORTCULLIS_ADMIN_PASSWORD=$ADMIN_PW PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS=false \
    PORTCULLIS_DATABASE__URL=${PCL_TEST_POSTGRES_URL%/*}/$DB PORTCULLIS_S3__BUCKET=$BUCKET \
    PORTCULLIS_S3__ENDPOINT=$PCL_TEST_S3_ENDPOINT PORTCULLIS_S3__ACCESS_KEY_ID=test PORTCULLIS_S3__SECRET_ACCESS_KEY=test \
    PORTCULLIS_S3__PATH_STYLE=true PORTCULLIS_UPSTREAMS="[{registry=\"docker.io\",url=\"http://$UP_GW\"}]" \
    "$BIN" serve --data-dir "$STATE/data-${1##*:}" --listen "$1" 2>>"$STATE/portcullis.log" >/dev/null &
  PIDS+=($!)
  for _ in $(seq 100); do curl -sf "http://$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "bench-storm: replica on $1 did not start" >&2; exit 1
}
replica "$R1"; replica "$R2"
# (an access token, as CI and nodes use: a password's hash is deliberately slow)
PAT=$(curl -sf -u "admin:$ADMIN_PW" -X POST "http://$R1/api/v1/access-tokens" -d '{"label":"storm","scopes":["read"]}' | jq -r .token)
cat >"$STATE/lb/nginx.conf" <<NGINX
pid $STATE/lb/nginx.pid; error_log $STATE/lb/error.log; worker_processes 1;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $STATE/lb/body; proxy_temp_path $STATE/lb/proxy;
  upstream replicas { server $R1; server $R2; keepalive 64; }
  server { listen $LB; location / { proxy_pass http://replicas; proxy_http_version 1.1; proxy_buffering off;
    proxy_set_header Connection ""; proxy_set_header Host \$http_host; } } }
NGINX
nginx -p "$STATE/lb" -c "$STATE/lb/nginx.conf"

# distribution's pull-through proxy of the same registry
mkdir -p "$STATE/dist"
cat >"$STATE/dist/config.yml" <<YML
version: 0.1
log: { level: warn, accesslog: { disabled: true } }
storage: { filesystem: { rootdirectory: "$STATE/dist/data" }, delete: { enabled: true } }
http: { addr: $DIST }
proxy: { remoteurl: "http://$UP_DIST" }
YML
docker-registry serve "$STATE/dist/config.yml" >/dev/null 2>"$STATE/dist/log" &
PIDS+=($!)
for _ in $(seq 100); do curl -sf "http://$DIST/v2/" >/dev/null && break; sleep 0.1; done

# one 3-layer image per round, new to both (a fresh name is cold everywhere)
make_image() { # name: pushes library/<name>:1 to the peer registry; prints its blob bytes
  local dir=$STATE/img-$1; mkdir -p "$dir/blobs/sha256"
  python3 - "$dir" "$LAYER_MIB" <<'PY'
import hashlib, json, os, sys
d, mib = sys.argv[1], int(sys.argv[2])
def blob(b):
    h = hashlib.sha256(b).hexdigest()
    open(f"{d}/blobs/sha256/{h}", "wb").write(b)
    return {"digest": f"sha256:{h}", "size": len(b)}
layers = [dict(blob(os.urandom(mib << 20)), mediaType="application/vnd.oci.image.layer.v1.tar+gzip") for _ in range(3)]
cfg = dict(blob(json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": [l["digest"] for l in layers]}}).encode()),
           mediaType="application/vnd.oci.image.config.v1+json")
m = blob(json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cfg, "layers": layers}).encode())
json.dump({"schemaVersion": 2, "manifests": [dict(m, mediaType="application/vnd.oci.image.manifest.v1+json", annotations={"org.opencontainers.image.ref.name": "1"})]}, open(f"{d}/index.json", "w"))
open(f"{d}/oci-layout", "w").write('{"imageLayoutVersion":"1.0.0"}')
print(sum(l["size"] for l in layers) + cfg["size"])
PY
  skopeo copy -q --dest-tls-verify=false "oci:$dir:1" "docker://$PEER/library/$1:1" >/dev/null
}

ACC='application/vnd.oci.image.manifest.v1+json'
client() { # registry, image, creds (or ""): pulls as a client does; prints seconds taken, or fails
  local reg=$1 img=$2 creds=$3 t0 auth=() m d
  t0=$(date +%s.%N)
  if [ "$reg" = bucket ]; then # the floor: the blobs straight from the bucket
    for d in $(jq -r '.config.digest, .layers[].digest' <"$STATE/manifest-$img.json"); do
      [ "sha256:$(curl -sf "$PCL_TEST_S3_ENDPOINT/$BUCKET/blobs/sha256/${d#sha256:}" | sha256sum | cut -d' ' -f1)" = "$d" ] || return 1
    done
    awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a - b}'
    return 0
  fi
  if [ -n "$creds" ]; then
    auth=(-H "Authorization: Bearer $(curl -sf -u "$creds" "http://$reg/token?service=portcullis&scope=repository:library/$img:pull" | jq -r .token)")
  fi
  m=$(curl -sf "${auth[@]}" -H "Accept: $ACC" "http://$reg/v2/library/$img/manifests/1")
  for d in $(jq -r '.config.digest, .layers[].digest' <<<"$m"); do
    [ "sha256:$(curl -sf "${auth[@]}" "http://$reg/v2/library/$img/blobs/$d" | sha256sum | cut -d' ' -f1)" = "$d" ] || { echo "bench-storm: $reg served $d wrong" >&2; return 1; }
  done
  awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a - b}'
}
storm() { # label, registry, image, creds, image bytes
  local t0 ok=0 pids=() wall slowest
  rm -f "$STATE/times"
  t0=$(date +%s.%N)
  for _ in $(seq "$CLIENTS"); do client "$2" "$3" "$4" >>"$STATE/times" & pids+=($!); done
  for p in "${pids[@]}"; do wait "$p" && ok=$((ok + 1)); done
  wall=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN{print a - b}')
  [ "$ok" = "$CLIENTS" ] || { echo "bench-storm: $1: only $ok of $CLIENTS clients got the image intact" >&2; exit 1; }
  slowest=$(sort -g "$STATE/times" | tail -1)
  say "$1" "storm_MBps.$5" "$(awk -v b="$6" -v n="$CLIENTS" -v w="$wall" 'BEGIN{printf "%.0f", b*n/w/1e6}')"
  say "$1" "storm_slowest_s.$5" "$(printf '%.2f' "$slowest")"
}
for r in $(seq "$ROUNDS"); do
  IMG=storm-$$-$r; BYTES=$(make_image "$IMG")
  for side in portcullis distribution; do
    if [ $side = portcullis ]; then REG=$LB; CREDS="admin:$PAT"; LOG=gw; else REG=$DIST; CREDS=; LOG=dist; fi
    before=$(upstream_bytes $LOG)
    storm "$side" "$REG" "$IMG" "$CREDS" cold "$BYTES"
    say "$side" storm_upstream_over_image.cold "$(awk -v u="$(( $(upstream_bytes $LOG) - before ))" -v b="$BYTES" 'BEGIN{printf "%.2f", u/b}')"
    storm "$side" "$REG" "$IMG" "$CREDS" warm "$BYTES"
  done
  curl -sf -H "Accept: $ACC" "http://$PEER/v2/library/$IMG/manifests/1" >"$STATE/manifest-$IMG.json"
  storm s3-direct bucket "$IMG" "" warm "$BYTES"
done
