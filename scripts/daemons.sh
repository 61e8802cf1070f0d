#!/usr/bin/env bash
# daemons.sh start|stop|env: private containerd and dockerd for the client tests and a throwaway
# PostgreSQL cluster and an S3 server (moto) on free loopback ports for the storage tests, all
# state under $PCL_STATE (default /tmp/pcl-test; keep it short: unix socket paths must stay
# under 108 bytes).
# PostgreSQL also takes TLS with a certificate from a throwaway CA (PCL_TEST_POSTGRES_CA), which
# the tests verify.
# `env` prints the variables the tests read (CONTAINERD_SOCK, DOCKER_SOCK, PCL_TEST_POSTGRES_URL,
# PCL_TEST_POSTGRES_CA, PCL_TEST_S3_ENDPOINT).
set -euo pipefail
S=${PCL_STATE:-/tmp/pcl-test}
CSOCK=$S/containerd/containerd.sock
DSOCK=$S/docker/docker.sock
alive() { [ -f "$S/$1.pid" ] && kill -0 "$(cat "$S/$1.pid")" 2>/dev/null; }
wait_for() { for _ in $(seq 1 300); do "$@" && return 0; sleep 0.1; done; return 1; }
start() {
  mkdir -p "$S/containerd/certs.d" "$S/docker" "$S/logs"
  if ! alive containerd; then
    cat > "$S/containerd.toml" <<TOML
version = 2
root = "$S/containerd/root"
state = "$S/containerd/state"
[grpc]
  address = "$CSOCK"
[ttrpc]
  address = "$CSOCK.ttrpc"
# The CRI image service (the calls the kubelet makes) for the credential provider's test: registry
# hosts from $S/containerd/certs.d, layers unpacked without overlayfs.
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "registry.invalid/pause:3.9"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "$S/containerd/certs.d"
TOML
    containerd --config "$S/containerd.toml" >"$S/logs/containerd.log" 2>&1 &
    echo $! > "$S/containerd.pid"
    wait_for test -S "$CSOCK" || { tail -20 "$S/logs/containerd.log" >&2; echo "containerd did not start" >&2; exit 1; }
  fi
  if ! alive dockerd; then
    dockerd --data-root "$S/docker/root" --exec-root "$S/docker/exec" --pidfile "$S/docker/docker.pid" \
      -H "unix://$DSOCK" --iptables=false --ip6tables=false --bridge=none --storage-driver vfs \
      --containerd "$CSOCK" >"$S/logs/dockerd.log" 2>&1 &
    echo $! > "$S/dockerd.pid"
    wait_for docker -H "unix://$DSOCK" version >/dev/null 2>&1 || { tail -20 "$S/logs/dockerd.log" >&2; echo "dockerd did not start" >&2; exit 1; }
  fi
  start_postgres
  start_s3
  echo "daemons: containerd, dockerd, PostgreSQL (port $(cat "$S/postgres.port")) and S3 (port $(cat "$S/s3.port")) running under $S"
}
VENV=${PCL_VENV:-/var/cache/pcl-venv}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
start_s3() {
  alive moto && return 0
  port=$(free_port)
  "$VENV/bin/moto_server" -H 127.0.0.1 -p "$port" >"$S/logs/moto.log" 2>&1 &
  echo $! > "$S/moto.pid"
  wait_for bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null || { tail -20 "$S/logs/moto.log" >&2; echo "moto did not start" >&2; exit 1; }
  echo "$port" > "$S/s3.port"
}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
PGDATA=$S/postgres/data
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
pg_alive() { [ -f "$S/postgres.port" ] && as_pg "$PGBIN/pg_ctl" -D "$PGDATA" status >/dev/null 2>&1; }
start_postgres() {
  pg_alive && return 0
  mkdir -p "$S/postgres"
  [ "$(id -u)" = 0 ] && chown postgres "$S/postgres" "$S/logs"
  if [ ! -f "$PGDATA/PG_VERSION" ]; then
    as_pg "$PGBIN/initdb" -D "$PGDATA" -A trust -U portcullis >"$S/logs/initdb.log" 2>&1 \
      || { tail -20 "$S/logs/initdb.log" >&2; echo "initdb failed" >&2; exit 1; }
  fi
  [ -f "$S/postgres/server.crt" ] || make_certs "$S/postgres"
  port=$(free_port)
  as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -l "$S/logs/postgres.log" -w \
    -o "-p $port -k $S/postgres -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=300 -c ssl=on -c ssl_cert_file=$S/postgres/server.crt -c ssl_key_file=$S/postgres/server.key" start >/dev/null \
    || { tail -20 "$S/logs/postgres.log" >&2; echo "PostgreSQL did not start" >&2; exit 1; }
  echo "$port" > "$S/postgres.port"
}
# A CA and a server certificate it signs for 127.0.0.1 (PostgreSQL wants its key private).
make_certs() {
  d=$1
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj /CN=pcl-test-ca -keyout "$d/ca.key" -out "$d/ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$d/server.key" -out "$d/server.csr" 2>/dev/null
  printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > "$d/server.ext"
  openssl x509 -req -in "$d/server.csr" -CA "$d/ca.crt" -CAkey "$d/ca.key" -CAcreateserial -days 30 \
    -extfile "$d/server.ext" -out "$d/server.crt" 2>/dev/null
  chmod 600 "$d/server.key"
  [ "$(id -u)" = 0 ] && chown postgres "$d/server.key" "$d/server.crt"
  return 0
}
stop() {
  if pg_alive; then as_pg "$PGBIN/pg_ctl" -D "$PGDATA" -m fast stop >/dev/null || true; fi
  rm -f "$S/postgres.port"
  rm -f "$S/s3.port"
  for n in moto dockerd containerd; do
    if alive "$n"; then
      pid=$(cat "$S/$n.pid"); kill "$pid"
      for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$S/$n.pid"
  done
}
case ${1:-} in
  start) start ;;
  stop) stop ;;
  env) echo "CONTAINERD_SOCK=$CSOCK DOCKER_SOCK=$DSOCK PCL_TEST_POSTGRES_URL=postgres://portcullis@127.0.0.1:$(cat "$S/postgres.port" 2>/dev/null)/postgres PCL_TEST_POSTGRES_CA=$S/postgres/ca.crt PCL_TEST_S3_ENDPOINT=http://127.0.0.1:$(cat "$S/s3.port" 2>/dev/null)" ;;
  *) echo "usage: daemons.sh start|stop|env" >&2; exit 2 ;;
esac
