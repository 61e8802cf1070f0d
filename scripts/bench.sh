#!/usr/bin/env bash
# bench.sh: portcullis side by side with CNCF distribution 2.8 (the peer) on this machine, in one
# run, interleaved. Uses the peer kit (../shared/tools/peer or $PEER_KIT) for the peer registries,
# the test images and the common measurements, and adds the ones the kit lacks:
#   token_rps        GET /token with an access token as Basic password (wrk)
#   push_MBps        monolithic push (POST + PUT with the whole 512 MiB body), median of RUNS
#   rss16_*          RSS idle, peak while 16 clients download the 512 MiB blob at once, and
#                    idle 12 s after
# Prints "RESULT <target> <key> <value>" lines; also written to $OUT.
#   proxy_*          pull-through of the peer registry: cold and warm blob GET and skopeo copy,
#                    time to first byte, RSS while filling blobs of different sizes, next to
#                    distribution's own proxy (the kit's `proxy` section) and a direct GET upstream;
#                    the gateway's CPU per cold 512 MiB fill next to openssl's SHA-256 of the same
#                    bytes and to the floor (floor *: receiving them with curl and storing them
#                    with dd + fsync, no gateway at all); and cold 512 MiB GETs in PAIRS (6) of a
#                    fresh distribution proxy then a fresh gateway (cold_paired_*), each pair with
#                    the floor's verifying, hashing-only and forwarding-only GET of the same blob
#                    (floor cold_verify_*, cold_hash_*, cold_forward_*:
#                    crates/oci/examples/fill_floor.rs)
# Env: ROUNDS (2) RUNS (3) WRK_ARGS ("-t2 -c32 -d5s") PORT (7000) BIG_SIZES_MIB ("1 64 512")
#   iam_*            manifest GET latency of a restricted member with Image Access Management off and on
#   policy decide_*  decision latency with 1 000 exceptions (crates/policy/examples/decide_bench.rs)
#   ldap_*           sign-in latency through a real OpenLDAP, cold and cached, next to
#                    a local password and an access token (scripts/bench-ldap.sh)
#   sig_*            manifest GET of a signed image with a signature rule, cold and verified
#                    before, next to no rule and to the peer (scripts/bench-signatures.sh)
#   workload_*       GET /token with a Kubernetes service-account token matched by a workload
#                    rule, next to an access token, interleaved (scripts/bench-workloads.sh)
#   scale            (PARTS=scale) authenticated manifest GET (the kit's wrk section) on SQLite, on
#                    PostgreSQL, and on two PostgreSQL replicas behind nginx, next to the peer with
#                    token auth; PostgreSQL is the throwaway cluster of scripts/daemons.sh
#                    (scale_*_over_*: ratios of the medians; issue 29's target on PostgreSQL: >= 0.8)
#   storm            (PARTS=storm) 32 clients pulling one cold 3-layer image at once through two
#                    replicas on PostgreSQL + S3 and through distribution's proxy: upstream bytes
#                    over the image's, MB/s and the slowest client, cold and warm (scripts/bench-storm.sh)
#      PARTS ("registry extra proxy policy ldap signatures workloads"; add "scale", "storm": which groups to run)
#   BASE_BIN=<path to an earlier build of portcullis>: also runs it (label portcullis-base) in the
#      registry and Image Access Management parts, interleaved, to compare a change with before it
set -euo pipefail
cd "$(dirname "$0")/.."
KIT=${PEER_KIT:-$(cd .. && pwd)/shared/tools/peer}
export PEER_STATE=${PEER_STATE:-/tmp/portcullis-peer}
export RUNS=${RUNS:-3} WRK_ARGS=${WRK_ARGS:-"-t2 -c32 -d5s"}
ROUNDS=${ROUNDS:-2}; PORT=${PORT:-7000}
OUT=${OUT:-$PEER_STATE/results/portcullis-bench.txt}
PCL=127.0.0.1:$PORT; PEER=127.0.0.1:5000; TOKENREG=127.0.0.1:5003
ADMIN_PW=bench-admin-password
"$KIT/install-deps.sh" >/dev/null; scripts/install-deps.sh >/dev/null
cargo build --release -q -p portcullis
BIN=${CARGO_TARGET_DIR:-target}/release/portcullis
BASE=127.0.0.1:$((PORT + 20)); BASE_BIN=${BASE_BIN:-}
I=$PEER_STATE/images/oci
[ -f "$I/index.json" ] && grep -q '"big"' "$I/index.json" || BIG_SIZES_MIB=${BIG_SIZES_MIB:-"1 64 512"} "$KIT/make-images.sh" >/dev/null
BENCH=1 "$KIT/peers.sh" start reg nginx tokenreg >/dev/null
PEER_PID=$(cat "$PEER_STATE/run/reg.pid"); TOKENREG_PID=$(cat "$PEER_STATE/run/tokenreg.pid")
mkdir -p "$(dirname "$OUT")"; : >"$OUT"
say() { echo "RESULT $*" | tee -a "$OUT"; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{printf "%.2f", a/b}'; } # a / b, two decimals

# --- portcullis on its own data directory, access log off like the peer's BENCH=1
start_pcl() { # binary, data directory, listen address: prints the PID once it answers
  rm -rf "$2"
  PORTCULLIS_ADMIN_PASSWORD=$ADMIN_PW PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS=false "$1" serve --data-dir "$2" --listen "$3" >/dev/null 2>>"$PEER_STATE/logs/portcullis.log" &
  local pid=$!
  for _ in $(seq 100); do curl -sf "http://$3/healthz" >/dev/null && break; sleep 0.1; done
  curl -sf -u "admin:$ADMIN_PW" -X POST "http://$3/api/v1/orgs" -d '{"name":"acme"}' >/dev/null
  echo "$pid"
}
: >"$PEER_STATE/logs/portcullis.log"
PID=$(start_pcl "$BIN" "$PEER_STATE/pcl-bench" "$PCL"); BASE_PID=
trap 'kill $PID $BASE_PID 2>/dev/null || true' EXIT
[ -n "$BASE_BIN" ] && BASE_PID=$(start_pcl "$BASE_BIN" "$PEER_STATE/pcl-base" "$BASE")
PAT=$(curl -sf -u "admin:$ADMIN_PW" -X POST "http://$PCL/api/v1/access-tokens" -d '{"label":"bench","scopes":["read"]}' | jq -r .token)

# --- the same images everywhere
sk() { skopeo copy -q --dest-tls-verify=false "$@"; }
sk "oci:$I:big" "docker://$PEER/library/big:1"; sk "oci:$I:tiny" "docker://$PEER/library/alpine-test:1"
sk --dest-creds admin:admin "oci:$I:big" "docker://$TOKENREG/library/big:1"
sk --dest-creds admin:admin "oci:$I:tiny" "docker://$TOKENREG/library/alpine-test:1"
for reg in $PCL ${BASE_PID:+$BASE}; do
  sk --dest-creds "admin:$ADMIN_PW" "oci:$I:big" "docker://$reg/acme/big:1"
  sk --dest-creds "admin:$ADMIN_PW" "oci:$I:tiny" "docker://$reg/acme/alpine-test:1"
done

kit() { # label, env..., sections...: the kit's bench.sh, RESULT lines relabelled
  local label=$1; shift
  env "$@" "$KIT/bench.sh" $SECTIONS 2>/dev/null | sed -n "s/^RESULT /RESULT $label /p" | tee -a "$OUT"
}
PARTS=${PARTS:-"registry extra proxy policy ldap signatures workloads"}
has() { case " $PARTS " in *" $1 "*) return 0 ;; esac; return 1; }
if has registry; then for r in $(seq "$ROUNDS"); do
  SECTIONS="blob wrk skopeo" kit distribution REG=$PEER TARGET_PID=$PEER_PID
  SECTIONS="wrk" kit distribution-token REG=$TOKENREG TARGET_PID=$TOKENREG_PID CREDS=reader:reader
  SECTIONS="blob wrk skopeo" kit portcullis REG=$PCL TARGET_PID=$PID CREDS="admin:$ADMIN_PW" REPO=acme/big SMALL_REPO=acme/alpine-test
  [ -n "$BASE_PID" ] && SECTIONS="blob wrk skopeo" kit portcullis-base REG=$BASE TARGET_PID=$BASE_PID CREDS="admin:$ADMIN_PW" REPO=acme/big SMALL_REPO=acme/alpine-test
done; fi

if has extra; then
# --- /token with an access token
B64=$(printf 'admin:%s' "$PAT" | base64 -w0)
wrk -t2 -c16 -d5s -H "Authorization: Basic $B64" "http://$PCL/token?service=portcullis&scope=repository:acme/alpine-test:pull" >"$PEER_STATE/results/wrk-token.txt"
say portcullis token_rps "$(awk '/Requests\/sec/{print $2}' "$PEER_STATE/results/wrk-token.txt") ($(awk '/Non-2xx/{print "NON-2XX " $NF}' "$PEER_STATE/results/wrk-token.txt"))"

# --- monolithic push of the 512 MiB layer: POST, then PUT ?digest= with the whole body
read -r BD BSZ < <(jq -r '.layers | max_by(.size) | "\(.digest) \(.size)"' "$I/blobs/sha256/$(jq -r '.manifests[] | select(.annotations."org.opencontainers.image.ref.name"=="big") | .digest' "$I/index.json" | cut -d: -f2)")
BF=$I/blobs/sha256/${BD#sha256:}
push() { # registry, repo, auth header...
  local reg=$1 repo=$2; shift 2
  local loc; loc=$(curl -sf -o /dev/null -D - "$@" -X POST "http://$reg/v2/$repo/blobs/uploads/" | tr -d '\r' | awk -F': ' 'tolower($1)=="location"{print $2}')
  case $loc in http*) ;; *) loc=http://$reg$loc ;; esac
  case $loc in *\?*) loc="$loc&digest=$BD" ;; *) loc="$loc?digest=$BD" ;; esac
  curl -sf -o /dev/null "$@" -X PUT -H 'Content-Type: application/octet-stream' --data-binary "@$BF" -w '%{speed_upload}\n' "$loc"
}
PUSH_TOKEN=$(curl -sf -u "admin:$ADMIN_PW" "http://$PCL/token?service=portcullis&scope=repository:acme/pushbench:pull,push" | jq -r .token)
for i in $(seq "$RUNS"); do
  push "$PEER" library/pushbench >>"$PEER_STATE/results/push-peer.txt"
  push "$PCL" acme/pushbench -H "Authorization: Bearer $PUSH_TOKEN" >>"$PEER_STATE/results/push-pcl.txt"
done
say distribution push_MBps "$(tail -n "$RUNS" "$PEER_STATE/results/push-peer.txt" | median | awk '{printf "%.0f", $1/1e6}')"
say portcullis push_MBps "$(tail -n "$RUNS" "$PEER_STATE/results/push-pcl.txt" | median | awk '{printf "%.0f", $1/1e6}')"

# --- RSS with 16 parallel downloads of the 512 MiB blob
rss16() { # label pid url auth...
  local label=$1 pid=$2 url=$3; shift 3
  local idle; idle=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  ( while kill -0 "$pid" 2>/dev/null; do awk '/VmRSS/{print $2}' "/proc/$pid/status"; sleep 0.05; done ) >"$PEER_STATE/results/rss16-$label.txt" &
  local sampler=$!
  for _ in $(seq 16); do curl -sf -o /dev/null "$@" "$url" & done
  wait $(jobs -p | grep -v "^$sampler$" | grep -v "^$PID$") 2>/dev/null || true
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  say "$label" rss16_idle_MiB "$(awk -v k="$idle" 'BEGIN{printf "%.1f", k/1024}')"
  say "$label" rss16_peak_MiB "$(sort -n "$PEER_STATE/results/rss16-$label.txt" | tail -1 | awk '{printf "%.1f", $1/1024}')"
  # idle again after the load: what stays resident (portcullis returns freed memory every 10 s)
  sleep 12
  say "$label" rss16_after_MiB "$(awk '/VmRSS/{printf "%.1f", $2/1024}' "/proc/$pid/status")"
}
PULL_TOKEN=$(curl -sf -u "admin:$ADMIN_PW" "http://$PCL/token?service=portcullis&scope=repository:acme/big:pull" | jq -r .token)
rss16 distribution "$PEER_PID" "http://$PEER/v2/library/big/blobs/$BD"
rss16 portcullis "$PID" "http://$PCL/v2/acme/big/blobs/$BD" -H "Authorization: Bearer $PULL_TOKEN"

# --- Image Access Management off vs on: manifest GET of a restricted member (wrk p50)
iam_bench() { # label, registry
  local A=(-u "admin:$ADMIN_PW") label=$1 reg=$2
  curl -sf "${A[@]}" -X POST "http://$reg/api/v1/users" -d '{"username":"member","password":"member-password"}' >/dev/null
  curl -sf "${A[@]}" -X POST "http://$reg/api/v1/orgs/acme/teams" -d '{"name":"dev"}' >/dev/null
  curl -sf "${A[@]}" -X POST "http://$reg/api/v1/orgs/acme/teams/dev/members" -d '{"username":"member"}' >/dev/null
  curl -sf "${A[@]}" -X PUT "http://$reg/api/v1/orgs/acme/teams/dev/permissions/alpine-test" -d '{"permission":"read"}' >/dev/null
  local MT; MT=$(curl -sf -u member:member-password "http://$reg/token?service=portcullis&scope=repository:acme/alpine-test:pull" | jq -r .token)
  for state in off on; do
    [ "$state" = on ] && curl -sf "${A[@]}" -X PUT "http://$reg/api/v1/orgs/acme/settings" \
      -d '{"restricted_images":{"enabled":true},"registry_access":{"enabled":true,"allowed_registries":["docker.io"]}}' >/dev/null
    wrk -t2 -c16 -d5s --latency -H "Authorization: Bearer $MT" -H "Accept: application/vnd.oci.image.manifest.v1+json" \
      "http://$reg/v2/acme/alpine-test/manifests/1" >"$PEER_STATE/results/wrk-iam-$label-$state.txt"
    say "$label" "iam_manifest_GET_p50.$state" "$(awk '$1=="50%"{print $2}' "$PEER_STATE/results/wrk-iam-$label-$state.txt") ($(awk '/Requests\/sec/{print $2}' "$PEER_STATE/results/wrk-iam-$label-$state.txt") req/s$(awk '/Non-2xx/{print ", NON-2XX " $NF}' "$PEER_STATE/results/wrk-iam-$label-$state.txt"))"
  done
}
iam_bench portcullis "$PCL"
[ -n "$BASE_PID" ] && iam_bench portcullis-base "$BASE"
fi

if has policy; then
  cargo run -q --release -p portcullis-policy --example decide_bench | tee -a "$OUT"
fi

if has proxy; then
# --- pull-through: distribution's proxy (the kit) vs portcullis proxying the same peer registry
BENCH=1 "$KIT/peers.sh" start proxy >/dev/null
SECTIONS="proxy" kit distribution REG=$PEER TARGET_PID=$PEER_PID
GW=127.0.0.1:$((PORT + 1)); GWDATA=$PEER_STATE/pcl-gw; GWPID=
gw_stop() { # stops the gateway and removes its data
  if [ -n "$GWPID" ]; then kill "$GWPID" 2>/dev/null; wait "$GWPID" 2>/dev/null || true; GWPID=; fi
  rm -rf "$GWDATA"
}
gw_start() { # a fresh, empty gateway whose docker.io is the peer registry
  gw_stop
  PORTCULLIS_ADMIN_PASSWORD=$ADMIN_PW PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS=false PORTCULLIS_UPSTREAMS="[{registry=\"docker.io\",url=\"http://$PEER\"}]" \
    "$BIN" serve --data-dir "$GWDATA" --listen "$GW" 2>>"$PEER_STATE/logs/portcullis-gw.log" &
  GWPID=$!
  for _ in $(seq 100); do curl -sf "http://$GW/healthz" >/dev/null && break; sleep 0.1; done
  GWTOKEN=$(curl -sf -u "admin:$ADMIN_PW" "http://$GW/token?service=portcullis&scope=repository:library/big:pull" | jq -r .token)
}
ACC='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
gw_get() { curl -sf -o /dev/null -H "Authorization: Bearer $GWTOKEN" -H "Accept: $ACC" -w "$2" "http://$GW/v2/library/big/$1"; }
MANIFEST=$(curl -sf -H "Accept: $ACC" "http://$PEER/v2/library/big/manifests/1")
read -r D512 SZ512 < <(jq -r '.layers | max_by(.size) | "\(.digest) \(.size)"' <<<"$MANIFEST")
read -r D64 _ < <(jq -r '[.layers[] | select(.size > 30000000 and .size < 100000000)][0] | "\(.digest) \(.size)"' <<<"$MANIFEST")
: >"$PEER_STATE/results/gw-cold.txt"; : >"$PEER_STATE/results/gw-ttfb.txt"
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; } # user + system, in 1/100 s
: >"$PEER_STATE/results/gw-cold-cpu.txt"
for i in $(seq "$RUNS"); do
  gw_start; gw_get manifests/1 '' >/dev/null
  before=$(cpu_ticks "$GWPID")
  gw_get "blobs/$D512" '%{speed_download} %{time_starttransfer}\n' | tee -a "$PEER_STATE/results/gw-cold.txt" | awk '{print $2}' >>"$PEER_STATE/results/gw-ttfb.txt"
  sleep 0.2; echo "$(( $(cpu_ticks "$GWPID") - before ))" >>"$PEER_STATE/results/gw-cold-cpu.txt"
done
# the SHA-256 cost of the same bytes (OpenSSL, SHA extensions where the CPU has them), same run
BLOBFILE=$(find "$PEER_STATE" -path "*/blobs/sha256/${D512:7:2}/${D512:7}/data" | head -1)
cat "$BLOBFILE" >/dev/null
: >"$PEER_STATE/results/sha-cpu.txt"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f "%U %S" -a -o "$PEER_STATE/results/sha-cpu.txt" openssl dgst -sha256 "$BLOBFILE" >/dev/null
done
SHA_S=$(awk '{print $1 + $2}' "$PEER_STATE/results/sha-cpu.txt" | median)
# the floor without any gateway, same bytes: receiving them from the peer (curl into /dev/null) and
# storing them durably (dd in 1 MiB writes from the page cache, fsync): what a verifying cache
# pays besides SHA-256 before it serves anyone
: >"$PEER_STATE/results/recv-cpu.txt"; : >"$PEER_STATE/results/store-cpu.txt"
for i in $(seq "$RUNS"); do
  /usr/bin/time -f "%U %S" -a -o "$PEER_STATE/results/recv-cpu.txt" curl -s -o /dev/null "http://$PEER/v2/library/big/blobs/$D512"
  /usr/bin/time -f "%U %S" -a -o "$PEER_STATE/results/store-cpu.txt" \
    dd if="$BLOBFILE" of="$PEER_STATE/run/floor.bin" bs=1M conv=fsync status=none
  rm -f "$PEER_STATE/run/floor.bin"
done
RECV_S=$(awk '{print $1 + $2}' "$PEER_STATE/results/recv-cpu.txt" | median)
STORE_S=$(awk '{print $1 + $2}' "$PEER_STATE/results/store-cpu.txt" | median)
say floor receive_cpu_s.512MiB_median "$RECV_S"
say floor store_cpu_s.512MiB_median "$STORE_S"
say floor verify_receive_store_over_sha "$(awk -v a="$RECV_S" -v b="$STORE_S" -v c="$SHA_S" 'BEGIN{printf "%.2f", (a+b+c)/c}')"
FILL_S=$(awk '{print $1 / 100}' "$PEER_STATE/results/gw-cold-cpu.txt" | median)
say portcullis proxy_cold_fill_cpu_s.512MiB_median "$FILL_S"
say openssl sha256_cpu_s.512MiB_median "$SHA_S"
say portcullis proxy_cold_fill_cpu_over_sha "$(ratio "$FILL_S" "$SHA_S")"
curl -s -o /dev/null "http://$PEER/v2/library/big/blobs/$D512"
for i in $(seq "$RUNS"); do curl -s -o /dev/null -w '%{speed_download} %{time_starttransfer}\n' "http://$PEER/v2/library/big/blobs/$D512"; done >"$PEER_STATE/results/direct.txt"
for i in $(seq "$RUNS"); do gw_get "blobs/$D512" '%{speed_download}\n'; done >"$PEER_STATE/results/gw-warm.txt"
say portcullis proxy_blob_GET_MBps.cold_median "$(awk '{print $1}' "$PEER_STATE/results/gw-cold.txt" | median | awk '{printf "%.0f", $1/1e6}')"
say portcullis proxy_blob_GET_MBps.warm_median "$(median <"$PEER_STATE/results/gw-warm.txt" | awk '{printf "%.0f", $1/1e6}')"
say upstream direct_blob_GET_MBps.median "$(awk '{print $1}' "$PEER_STATE/results/direct.txt" | median | awk '{printf "%.0f", $1/1e6}')"
say portcullis proxy_ttfb_ms.cold_median "$(median <"$PEER_STATE/results/gw-ttfb.txt" | awk '{printf "%.1f", $1*1000}')"
say upstream direct_ttfb_ms.median "$(awk '{print $2}' "$PEER_STATE/results/direct.txt" | median | awk '{printf "%.1f", $1*1000}')"
# skopeo copy of the whole image through the gateway, cold and warm
gw_start
hyperfine --runs 1 --export-json "$PEER_STATE/results/gw-skopeo-cold.json" \
  "skopeo copy -q --src-tls-verify=false --src-creds admin:$ADMIN_PW docker://$GW/library/big:1 dir:$PEER_STATE/run/gw-dst" >/dev/null 2>&1
say portcullis proxy_skopeo_copy_s.cold "$(jq -r '.results[0].median*1000|floor/1000' "$PEER_STATE/results/gw-skopeo-cold.json")"
hyperfine --warmup 1 --runs "$RUNS" --prepare "rm -rf $PEER_STATE/run/gw-dst" --export-json "$PEER_STATE/results/gw-skopeo-warm.json" \
  "skopeo copy -q --src-tls-verify=false --src-creds admin:$ADMIN_PW docker://$GW/library/big:1 dir:$PEER_STATE/run/gw-dst" >/dev/null 2>&1
say portcullis proxy_skopeo_copy_s.warm_median "$(jq -r '.results[0].median*1000|floor/1000' "$PEER_STATE/results/gw-skopeo-warm.json")"
rm -rf "$PEER_STATE/run/gw-dst"
# RSS while filling a 64 MiB and a 512 MiB blob cold: should not grow with the blob
for pair in "64 $D64" "512 $D512"; do
  set -- $pair
  gw_start; gw_get manifests/1 '' >/dev/null
  ( while kill -0 "$GWPID" 2>/dev/null; do awk '/VmRSS/{print $2}' "/proc/$GWPID/status"; sleep 0.05; done ) >"$PEER_STATE/results/gw-rss-$1.txt" &
  sampler=$!
  gw_get "blobs/$2" '' >/dev/null
  kill "$sampler"; wait "$sampler" 2>/dev/null || true
  say portcullis "proxy_cold_fill_rss_peak_MiB.${1}MiB_blob" "$(sort -n "$PEER_STATE/results/gw-rss-$1.txt" | tail -1 | awk '{printf "%.1f", $1/1024}')"
done
# cold 512 MiB GET in pairs: a fresh distribution proxy, then a fresh gateway, PAIRS times, so
# both meet the same machine state. distribution stores a cold blob with a second, background
# fetch: its proxy is stopped, its data removed and the disk synced before the gateway's turn, so
# neither that fetch nor the writeback of its file takes CPU from the gateway (and the other way).
# Each pair also runs the floor (crates/oci/examples/fill_floor.rs), the same GET with no framework:
# `verify` does only what any verifying cache must before the last byte (receive, forward, store,
# SHA-256), `hash` the same without storing, `forward` only what distribution's proxy does on the
# client's path (receive, forward).
PROXY=127.0.0.1:${PROXY_PORT:-5002}
FLOOR=127.0.0.1:$((PORT + 5)); FLOORDATA=$PEER_STATE/run/floor-fill
cargo build --release -q -p portcullis-oci --example fill_floor
floor_get() { # mode: one cold GET through the floor, its data removed before and after
  rm -rf "$FLOORDATA"; mkdir -p "$FLOORDATA"; sync
  "$(dirname "$BIN")/examples/fill_floor" "$FLOOR" "$PEER" "$FLOORDATA" "$1" 2>>"$PEER_STATE/logs/floor.log" &
  local pid=$!
  for _ in $(seq 50); do (exec 3<>"/dev/tcp/${FLOOR%:*}/${FLOOR#*:}") 2>/dev/null && break; sleep 0.1; done
  curl -sf -o /dev/null -w '%{speed_download}\n' "http://$FLOOR/v2/library/big/blobs/$D512" >>"$PEER_STATE/results/pair-floor-$1.txt"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$FLOORDATA"
}
: >"$PEER_STATE/results/pair-dist.txt"; : >"$PEER_STATE/results/pair-gw.txt"
for m in verify hash forward; do : >"$PEER_STATE/results/pair-floor-$m.txt"; done
for i in $(seq "${PAIRS:-6}"); do
  gw_stop; sync
  "$KIT/peers.sh" stop proxy >/dev/null; rm -rf "$PEER_STATE/run/proxy-data"; BENCH=1 "$KIT/peers.sh" start proxy >/dev/null
  curl -sf -o /dev/null -H "Accept: $ACC" "http://$PROXY/v2/library/big/manifests/1"
  curl -sf -o /dev/null -w '%{speed_download}\n' "http://$PROXY/v2/library/big/blobs/$D512" >>"$PEER_STATE/results/pair-dist.txt"
  "$KIT/peers.sh" stop proxy >/dev/null; rm -rf "$PEER_STATE/run/proxy-data"; sync
  gw_start; gw_get manifests/1 '' >/dev/null
  gw_get "blobs/$D512" '%{speed_download}\n' >>"$PEER_STATE/results/pair-gw.txt"
  gw_stop
  floor_get verify; floor_get hash; floor_get forward
done
mbps() { median <"$PEER_STATE/results/$1.txt" | awk '{printf "%.0f", $1/1e6}'; }
PAIR_DIST=$(mbps pair-dist); PAIR_GW=$(mbps pair-gw); PAIR_FLOOR=$(mbps pair-floor-verify)
say distribution proxy_blob_GET_MBps.cold_paired_median "$PAIR_DIST"
say portcullis proxy_blob_GET_MBps.cold_paired_median "$PAIR_GW"
say floor proxy_blob_GET_MBps.cold_verify_paired_median "$PAIR_FLOOR"
say floor proxy_blob_GET_MBps.cold_hash_paired_median "$(mbps pair-floor-hash)"
say floor proxy_blob_GET_MBps.cold_forward_paired_median "$(mbps pair-floor-forward)"
say portcullis proxy_cold_paired_over_distribution "$(ratio "$PAIR_GW" "$PAIR_DIST")"
say portcullis proxy_cold_paired_over_floor_verify "$(ratio "$PAIR_GW" "$PAIR_FLOOR")"
say floor proxy_cold_verify_over_distribution "$(ratio "$PAIR_FLOOR" "$PAIR_DIST")"
kill "$GWPID" 2>/dev/null || true
fi
if has signatures; then
BIN=$BIN PORT=$PORT ADMIN_PW=$ADMIN_PW OUT=$OUT PEER=$PEER scripts/bench-signatures.sh
fi

if has ldap; then
BIN=$BIN PORT=$PORT ADMIN_PW=$ADMIN_PW OUT=$OUT scripts/bench-ldap.sh
fi
if has workloads; then
BIN=$BIN PORT=$PORT ADMIN_PW=$ADMIN_PW OUT=$OUT ROUNDS=$ROUNDS scripts/bench-workloads.sh
fi
if has scale; then
scripts/daemons.sh start >/dev/null; eval "export $(scripts/daemons.sh env)"
DB=pcl_bench_$$; psql -q "$PCL_TEST_POSTGRES_URL" -c "CREATE DATABASE $DB"
PGURL=${PCL_TEST_POSTGRES_URL%/*}/$DB
P1=127.0.0.1:$((PORT + 11)); P2=127.0.0.1:$((PORT + 12)); LB=127.0.0.1:$((PORT + 13))
pg_replica() { # listen data-dir
  rm -rf "$2"
  PORTCULLIS_ADMIN_PASSWORD=$ADMIN_PW PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_DATABASE__URL=$PGURL PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS=false \
    "$BIN" serve --data-dir "$2" --listen "$1" 2>>"$PEER_STATE/logs/portcullis-pg.log" &
  echo $! >"$2.pid"
  for _ in $(seq 100); do curl -sf "http://$1/healthz" >/dev/null && return 0; sleep 0.1; done
  echo "bench: replica on $1 did not start" >&2; exit 1
}
pg_replica "$P1" "$PEER_STATE/pg1"; R1=$(cat "$PEER_STATE/pg1.pid")
curl -sf -u "admin:$ADMIN_PW" -X POST "http://$P1/api/v1/orgs" -d '{"name":"acme"}' >/dev/null
sk --dest-creds "admin:$ADMIN_PW" "oci:$I:tiny" "docker://$P1/acme/alpine-test:1"
pg_replica "$P2" "$PEER_STATE/pg2"; R2=$(cat "$PEER_STATE/pg2.pid")
mkdir -p "$PEER_STATE/lb"
cat >"$PEER_STATE/lb/nginx.conf" <<NGINX
pid $PEER_STATE/lb/nginx.pid; error_log $PEER_STATE/lb/error.log; worker_processes 1;
events { worker_connections 1024; }
http { access_log off; client_body_temp_path $PEER_STATE/lb/body; proxy_temp_path $PEER_STATE/lb/proxy;
  upstream replicas { server $P1; server $P2; keepalive 64; }
  server { listen $LB; location / { proxy_pass http://replicas; proxy_http_version 1.1;
    proxy_set_header Connection ""; proxy_set_header Host \$http_host; } } }
NGINX
nginx -p "$PEER_STATE/lb" -c "$PEER_STATE/lb/nginx.conf"
for r in $(seq "$ROUNDS"); do
  SECTIONS="wrk" kit scale-distribution-token REG=$TOKENREG TARGET_PID=$TOKENREG_PID CREDS=reader:reader
  SECTIONS="wrk" kit scale-portcullis-sqlite REG=$PCL TARGET_PID=$PID CREDS="admin:$ADMIN_PW" SMALL_REPO=acme/alpine-test
  SECTIONS="wrk" kit scale-portcullis-postgres REG=$P1 TARGET_PID=$R1 CREDS="admin:$ADMIN_PW" SMALL_REPO=acme/alpine-test
  SECTIONS="wrk" kit scale-portcullis-postgres-2-replicas REG=$LB CREDS="admin:$ADMIN_PW" SMALL_REPO=acme/alpine-test
done
rps() { grep "^RESULT $1 wrk_rps.$2 " "$OUT" | awk '{print $4}' | median; } # label, request: median
for q in manifest_GET_tag manifest_GET_digest; do
  say portcullis "scale_postgres_over_sqlite.$q" "$(ratio "$(rps scale-portcullis-postgres $q)" "$(rps scale-portcullis-sqlite $q)")"
  say portcullis "scale_2_replicas_over_sqlite.$q" "$(ratio "$(rps scale-portcullis-postgres-2-replicas $q)" "$(rps scale-portcullis-sqlite $q)")"
  say portcullis "scale_postgres_over_distribution.$q" "$(ratio "$(rps scale-portcullis-postgres $q)" "$(rps scale-distribution-token $q)")"
done
nginx -p "$PEER_STATE/lb" -c "$PEER_STATE/lb/nginx.conf" -s stop || true
kill "$R1" "$R2" 2>/dev/null || true; sleep 1
psql -q "$PCL_TEST_POSTGRES_URL" -c "DROP DATABASE $DB WITH (FORCE)" || true
fi
if has storm; then
BIN=$BIN PORT=$PORT ADMIN_PW=$ADMIN_PW OUT=$OUT ROUNDS=$ROUNDS PEER=$PEER scripts/bench-storm.sh
fi
echo "bench: results in $OUT"
