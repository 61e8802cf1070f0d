#!/usr/bin/env bash
# bench-workloads.sh: sign-in with a workload identity token (the `workloads` part of bench.sh, or
# alone): a Kubernetes-style service-account token (RS256, the `kubernetes.io` claim) from an
# issuer whose keys are a JWKS file, matched by an organization's workload rule, next to an access
# token, interleaved, both as GET /token with Basic credentials (wrk):
#   workload_token_rps / pat_token_rps   requests per second, each round
#   workload_vs_pat                      the ratio of the medians (issue 27's target: >= 0.8)
# Env: BIN (the portcullis binary), PORT, ADMIN_PW, OUT, ROUNDS; prints "RESULT portcullis <key> <value>".
set -euo pipefail
BIN=$(realpath "${BIN:?the portcullis binary}"); PORT=${PORT:-7000}; ADMIN_PW=${ADMIN_PW:-bench-admin-password}
STATE=${PEER_STATE:-/tmp/portcullis-peer}/workloads; OUT=${OUT:-/dev/null}; ROUNDS=${ROUNDS:-2}
GW=127.0.0.1:$((PORT + 40)); ISS=https://cluster.bench.invalid
say() { echo "RESULT portcullis $*" | tee -a "$OUT"; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
b64url() { base64 -w0 | tr '+/' '-_' | tr -d '='; }
rm -rf "$STATE"; mkdir -p "$STATE"; cd "$STATE"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out sa.key 2>/dev/null
N=$(openssl rsa -in sa.key -noout -modulus | cut -d= -f2 | xxd -r -p | b64url)
printf '{"keys":[{"kty":"RSA","alg":"RS256","use":"sig","kid":"bench","n":"%s","e":"AQAB"}]}' "$N" >jwks.json
NOW=$(date +%s)
HEADER=$(printf '{"alg":"RS256","kid":"bench","typ":"JWT"}' | b64url)
CLAIMS=$(printf '{"aud":["portcullis"],"exp":%d,"iat":%d,"nbf":%d,"iss":"%s","kubernetes.io":{"namespace":"ci-web","serviceaccount":{"name":"builder","uid":"u1"},"pod":{"name":"web-0","uid":"u2"},"node":{"name":"node-1","uid":"u3"}},"sub":"system:serviceaccount:ci-web:builder"}' \
  $((NOW + 3600)) "$NOW" "$NOW" "$ISS" | b64url)
SIG=$(printf '%s.%s' "$HEADER" "$CLAIMS" | openssl dgst -sha256 -sign sa.key | b64url)
JWT="$HEADER.$CLAIMS.$SIG"
PORTCULLIS_ADMIN_PASSWORD=$ADMIN_PW PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS=false \
  PORTCULLIS_AUTH__WORKLOAD_ISSUERS="[{name=\"k8s\",issuer=\"$ISS\",jwks_file=\"$STATE/jwks.json\"}]" \
  "$BIN" serve --data-dir "$STATE/pcl" --listen "$GW" >/dev/null 2>"$STATE/portcullis.log" &
GWPID=$!
trap 'kill $GWPID 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$GW/healthz" >/dev/null && break; sleep 0.1; done
api() { curl -sf -u "admin:$ADMIN_PW" -X "$1" "http://$GW$2" ${3:+-d "$3"}; }
api POST /api/v1/orgs '{"name":"acme"}' >/dev/null
api POST /api/v1/orgs/acme/teams '{"name":"ci"}' >/dev/null
api PUT /api/v1/orgs/acme/settings '{"workloads":{"rules":[{"issuer":"k8s","claims":{"namespace":"ci-*"},"teams":["ci"]}]}}' >/dev/null
PAT=$(api POST /api/v1/access-tokens '{"label":"bench","scopes":["read"]}' | jq -r .token)
URL="http://$GW/token?service=portcullis&scope=repository:acme/app:pull"
curl -sf -u "workload:$JWT" "$URL" >/dev/null || { echo "bench-workloads: the workload token was refused" >&2; curl -s -u "workload:$JWT" "$URL" >&2; exit 1; }
rps() { # label, user:password
  local b64; b64=$(printf '%s' "$2" | base64 -w0)
  wrk -t2 -c16 -d5s -H "Authorization: Basic $b64" "$URL" >"$STATE/wrk-$1.txt"
  grep -q 'Non-2xx' "$STATE/wrk-$1.txt" && { echo "bench-workloads: $1 got errors" >&2; cat "$STATE/wrk-$1.txt" >&2; exit 1; }
  awk '/Requests\/sec/{print $2}' "$STATE/wrk-$1.txt"
}
: >w.txt; : >p.txt
for _ in $(seq "$ROUNDS"); do
  w=$(rps workload "workload:$JWT"); say workload_token_rps "$w"; echo "$w" >>w.txt
  p=$(rps pat "admin:$PAT"); say pat_token_rps "$p"; echo "$p" >>p.txt
done
say workload_vs_pat "$(awk -v a="$(median <w.txt)" -v b="$(median <p.txt)" 'BEGIN{printf "%.2f", a/b}')"
