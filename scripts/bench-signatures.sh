#!/usr/bin/env bash
# bench-signatures.sh: what a signature rule costs a pull (the `signatures` part of bench.sh, or
# alone). A fresh portcullis hosts acme/app:1 (the kit's `tiny` image) and its cosign signature
# (made by the tests' sigstore_sign.py, pushed with skopeo); a member pulls the manifest by tag:
#   sig_manifest_GET_ms.no_rule_median     one GET (curl) with no signature rule
#   sig_manifest_GET_ms.cold_median        the first GET after a rule with a new key set (the
#                                          signature found, its payload read and verified)
#   sig_manifest_GET_p50.no_rule / .rule   wrk p50 without the rule and with it (verified before)
# and, with PEER set, distribution's manifest GET p50 in the same run (it verifies nothing).
# Env: BIN (the portcullis binary), PORT, ADMIN_PW, OUT, RUNS (5), PEER (host:port, optional),
#   PEER_KIT; prints "RESULT <target> <key> <value>".
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=$(realpath "${BIN:?the portcullis binary}"); PORT=${PORT:-7000}; ADMIN_PW=${ADMIN_PW:-bench-admin-password}
KIT=${PEER_KIT:-$(cd "$ROOT/.." && pwd)/shared/tools/peer}; export PEER_STATE=${PEER_STATE:-/tmp/portcullis-peer}
STATE=$PEER_STATE/signatures; OUT=${OUT:-/dev/null}; RUNS=${RUNS:-5}
GW=127.0.0.1:$((PORT + 40)); I=$PEER_STATE/images/oci; SIGN="python3 $ROOT/crates/portcullis/tests/integration/sigstore_sign.py"
say() { echo "RESULT $*" | tee -a "$OUT"; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
[ -f "$I/index.json" ] || "$KIT/make-images.sh" >/dev/null
rm -rf "$STATE"; mkdir -p "$STATE"; cd "$STATE"

PORTCULLIS_ADMIN_PASSWORD=$ADMIN_PW PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS=false \
  "$BIN" serve --data-dir "$STATE/data" --listen "$GW" 2>"$STATE/portcullis.log" &
PID=$!; trap 'kill $PID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$GW/healthz" >/dev/null && break; sleep 0.1; done
A=(-u "admin:$ADMIN_PW")
api() { curl -sf "${A[@]}" -X "$1" "http://$GW/api/v1/$2" -d "$3" >/dev/null; }
api POST orgs '{"name":"acme"}'
api POST users '{"username":"member","password":"member-password"}'
api POST orgs/acme/teams '{"name":"dev"}'
api POST orgs/acme/teams/dev/members '{"username":"member"}'
skopeo copy -q --dest-tls-verify=false --dest-creds "admin:$ADMIN_PW" "oci:$I:tiny" "docker://$GW/acme/app:1"
api PUT orgs/acme/teams/dev/permissions/app '{"permission":"read"}'
ACC='application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json'
DIGEST=$(curl -sf -I -u "admin:$ADMIN_PW" -H "Accept: $ACC" "http://$GW/v2/acme/app/manifests/1" -o /dev/null -w '%header{docker-content-digest}' ||
  skopeo inspect --tls-verify=false --creds "admin:$ADMIN_PW" "docker://$GW/acme/app:1" | jq -r .Digest)
for k in signer $(seq -f 'other%g' "$RUNS"); do $SIGN keygen . "$k" p256; done
$SIGN sign sig "$DIGEST" "$GW/acme/app" signer.key >/dev/null
skopeo copy -q --preserve-digests --dest-tls-verify=false --dest-creds "admin:$ADMIN_PW" "oci:sig:sig" "docker://$GW/acme/app:${DIGEST/:/-}.sig"
TOKEN=$(curl -sf -u member:member-password "http://$GW/token?service=portcullis&scope=repository:acme/app:pull" | jq -r .token)
get() { curl -sf -o /dev/null -H "Authorization: Bearer $TOKEN" -H "Accept: $ACC" -w '%{time_total}\n' "http://$GW/v2/acme/app/manifests/1"; }
rule() { # key files: the org rule requiring a signature by any of them
  jq -n --rawfile a "$1" --rawfile b "$2" '{signatures: {rules: [{images: "organization", keys: [$a, $b]}]}}' >rule.json
  curl -sf "${A[@]}" -X PUT "http://$GW/api/v1/orgs/acme/settings" -d @rule.json >/dev/null
}
ms() { median | awk '{printf "%.2f", $1 * 1000}'; }
WRK=(wrk -t2 -c16 -d5s --latency -H "Authorization: Bearer $TOKEN" -H "Accept: application/vnd.oci.image.manifest.v1+json")
p50() { awk '$1=="50%"{print $2}' "$1"; }
rps() { awk '/Requests\/sec/{print $2}' "$1"; }
non2xx() { awk '/Non-2xx/{print ", NON-2XX " $NF}' "$1"; }

get >/dev/null
for _ in $(seq "$RUNS"); do get; done | ms >no-rule.txt
"${WRK[@]}" "http://$GW/v2/acme/app/manifests/1" >wrk-no-rule.txt
# each rule names a new key set: its first GET finds and verifies the signature again
for i in $(seq "$RUNS"); do rule signer.pub "other$i.pub"; get; done | ms >cold.txt
"${WRK[@]}" "http://$GW/v2/acme/app/manifests/1" >wrk-rule.txt
say portcullis sig_manifest_GET_ms.no_rule_median "$(cat no-rule.txt)"
say portcullis sig_manifest_GET_ms.cold_median "$(cat cold.txt)"
say portcullis sig_manifest_GET_p50.no_rule "$(p50 wrk-no-rule.txt) ($(rps wrk-no-rule.txt) req/s$(non2xx wrk-no-rule.txt))"
say portcullis sig_manifest_GET_p50.rule "$(p50 wrk-rule.txt) ($(rps wrk-rule.txt) req/s$(non2xx wrk-rule.txt))"
if [ -n "${PEER:-}" ]; then
  "${WRK[@]}" "http://$PEER/v2/library/alpine-test/manifests/1" >wrk-peer.txt
  say distribution manifest_GET_p50.no_signatures "$(p50 wrk-peer.txt) ($(rps wrk-peer.txt) req/s$(non2xx wrk-peer.txt))"
fi
