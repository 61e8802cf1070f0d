#!/usr/bin/env bash
# bench-ldap.sh: sign-in latency through LDAP (the `ldap` part of bench.sh, or alone): a real
# OpenLDAP (Debian slapd) with 20 users over StartTLS, a portcullis signing in through it, and
# GET /token with Basic credentials:
#   ldap_signin_ms.cold_p50      first sign-in of each of the 20 users (a search and a bind)
#   ldap_signin_ms.cached_p50    the same user again and again (the 60 s verified cache), wrk
#   local_signin_ms.cached_p50   a local account's password (argon2id, cached alike), wrk
#   pat_signin_ms.p50            an access token, wrk
# Env: BIN (the portcullis binary), PORT, ADMIN_PW, OUT; prints "RESULT portcullis <key> <value>".
set -euo pipefail
BIN=$(realpath "${BIN:?the portcullis binary}"); PORT=${PORT:-7000}; ADMIN_PW=${ADMIN_PW:-bench-admin-password}
STATE=${PEER_STATE:-/tmp/portcullis-peer}/ldap; OUT=${OUT:-/dev/null}
LPORT=$((PORT + 30)); GW=127.0.0.1:$((PORT + 31)); SUFFIX=dc=example,dc=org
say() { echo "RESULT portcullis $*" | tee -a "$OUT"; }
median() { sort -g | awk '{a[NR]=$1} END{ if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2 }'; }
rm -rf "$STATE"; mkdir -p "$STATE/db"; cd "$STATE"
o() { openssl "$@" 2>/dev/null; }
o req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj "/CN=bench LDAP CA" -keyout ca.key -out ca.pem
o req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out req.pem
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >ext.cnf
o x509 -req -in req.pem -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext.cnf -out cert.pem
cat >slapd.conf <<CONF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
modulepath /usr/lib/ldap
moduleload back_mdb
pidfile $STATE/slapd.pid
TLSCACertificateFile $STATE/ca.pem
TLSCertificateFile $STATE/cert.pem
TLSCertificateKeyFile $STATE/key.pem
database mdb
maxsize 10485760
suffix "$SUFFIX"
rootdn "cn=admin,$SUFFIX"
rootpw bench-slapd-root
directory $STATE/db
CONF
{
  printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\no: Example\ndc: example\n\n' "$SUFFIX"
  printf 'dn: ou=people,%s\nobjectClass: organizationalUnit\nou: people\n\n' "$SUFFIX"
  printf 'dn: ou=groups,%s\nobjectClass: organizationalUnit\nou: groups\n\n' "$SUFFIX"
  for i in $(seq -w 1 20); do
    printf 'dn: uid=user%s,ou=people,%s\nobjectClass: inetOrgPerson\nuid: user%s\ncn: U\nsn: U\nuserPassword: ldap-pw-%s\n\n' "$i" "$SUFFIX" "$i" "$i"
  done
  printf 'dn: cn=acme:dev,ou=groups,%s\nobjectClass: groupOfNames\ncn: acme:dev\n' "$SUFFIX"
  for i in $(seq -w 1 20); do printf 'member: uid=user%s,ou=people,%s\n' "$i" "$SUFFIX"; done
} >data.ldif
/usr/sbin/slapadd -f slapd.conf -l data.ldif >/dev/null 2>&1
/usr/sbin/slapd -f slapd.conf -h "ldap://127.0.0.1:$LPORT/" -d 0 >/dev/null 2>&1 &
SLAPD=$!
rm -rf "$STATE/pcl"
PORTCULLIS_ADMIN_PASSWORD=$ADMIN_PW PORTCULLIS_LOG__LEVEL=warn PORTCULLIS_DOCKER_HUB__BADGE_LOOKUPS=false \
  PORTCULLIS_AUTH__LDAP__URL="ldap://127.0.0.1:$LPORT" PORTCULLIS_AUTH__LDAP__CA_FILE="$STATE/ca.pem" \
  PORTCULLIS_AUTH__LDAP__BIND_DN="cn=admin,$SUFFIX" PORTCULLIS_AUTH__LDAP__BIND_PASSWORD=bench-slapd-root \
  PORTCULLIS_AUTH__LDAP__USER_BASE="ou=people,$SUFFIX" PORTCULLIS_AUTH__LDAP__GROUP_BASE="ou=groups,$SUFFIX" \
  "$BIN" serve --data-dir "$STATE/pcl" --listen "$GW" >/dev/null 2>"$STATE/portcullis.log" &
GWPID=$!
trap 'kill $GWPID $SLAPD 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -sf "http://$GW/healthz" >/dev/null && break; sleep 0.1; done
curl -sf -u "admin:$ADMIN_PW" -X POST "http://$GW/api/v1/orgs" -d '{"name":"acme"}' >/dev/null
TOKEN_URL="http://$GW/token?service=portcullis"
# cold: each user's first sign-in searches the directory and binds as the user
for i in $(seq -w 1 20); do
  curl -sf -o /dev/null -w '%{time_total}\n' -u "user$i:ldap-pw-$i" "$TOKEN_URL"
done | awk '{print $1*1000}' | median | { read -r v; say ldap_signin_ms.cold_p50 "$v"; }
p50() { # label, user:password
  local b64; b64=$(printf '%s' "$2" | base64 -w0)
  wrk -t2 -c8 -d5s --latency -H "Authorization: Basic $b64" "$TOKEN_URL" >"$STATE/wrk-$1.txt"
  grep -q 'Non-2xx' "$STATE/wrk-$1.txt" && { echo "bench-ldap: $1 got errors" >&2; cat "$STATE/wrk-$1.txt" >&2; exit 1; }
  awk '$1=="50%"{v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) sub(/ms/,"",v); else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' "$STATE/wrk-$1.txt"
}
say ldap_signin_ms.cached_p50 "$(p50 ldap user01:ldap-pw-01)"
say local_signin_ms.cached_p50 "$(p50 local "admin:$ADMIN_PW")"
PAT=$(curl -sf -u "admin:$ADMIN_PW" -X POST "http://$GW/api/v1/access-tokens" -d '{"label":"bench","scopes":["read"]}' | jq -r .token)
say pat_signin_ms.p50 "$(p50 pat "admin:$PAT")"
