#!/usr/bin/env bash
# install-deps.sh: the Debian packages the tests and benchmarks use. Idempotent: runs
# `apt-get update` + `apt-get install` only when a package is missing.
set -euo pipefail
PKGS=(skopeo containerd podman buildah docker.io docker-registry umoci wrk apache2-utils jq curl openssl
      nginx-light busybox-static hyperfine time binutils systemd nodejs slapd python3-cryptography python3-jsonpatch chromium chromium-driver fonts-dejavu-core postgresql)
installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q 'install ok installed'; }
missing=(); for p in "${PKGS[@]}"; do installed "$p" || missing+=("$p"); done
SUDO=(); [ "$(id -u)" = 0 ] || SUDO=(sudo)
if [ ${#missing[@]} -eq 0 ]; then
  echo "install-deps: all packages present"
else
  echo "install-deps: installing ${missing[*]}"
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
  for p in "${PKGS[@]}"; do installed "$p" || { echo "install-deps: $p is still missing" >&2; exit 1; }; done
fi
# An S3-compatible server for the storage tests: moto, from PyPI, in a virtualenv outside the
# checkout (idempotent: installed once).
VENV=${PCL_VENV:-/var/cache/pcl-venv}
if [ ! -x "$VENV/bin/moto_server" ]; then
  echo "install-deps: installing moto[server] into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q 'moto[server]==5.1.*'
fi
# The SCIM compliance checker scim2-tester (with scim2-client's httpx2 engine), from PyPI, in its
# own virtualenv (its pydantic must not meet moto's dependencies).
SCIM_VENV=${PCL_SCIM_VENV:-/var/cache/pcl-scim-venv}
if [ ! -f "$SCIM_VENV/.scim2-tester-0.5.2" ]; then
  echo "install-deps: installing scim2-tester into $SCIM_VENV"
  python3 -m venv "$SCIM_VENV"
  "$SCIM_VENV/bin/pip" install -q 'scim2-tester==0.5.2' 'scim2-client[httpx2]==0.13.2'
  touch "$SCIM_VENV/.scim2-tester-0.5.2"
fi
# Kubernetes' schemas for the manifests under deploy/kubernetes: kubernetes-validate, from PyPI.
KV_VENV=${PCL_KV_VENV:-/var/cache/pcl-kv-venv}
if [ ! -f "$KV_VENV/.kubernetes-validate-1.37.0" ]; then
  echo "install-deps: installing kubernetes-validate into $KV_VENV"
  python3 -m venv "$KV_VENV"
  "$KV_VENV/bin/pip" install -q 'kubernetes-validate==1.37.0'
  touch "$KV_VENV/.kubernetes-validate-1.37.0"
fi
# A real OpenID provider for the single sign-on tests: oidc-provider, from npm, outside the
# checkout (idempotent). Version 8 supports the Node.js 18/20 of Debian and NodeSource.
NPM_DIR=${PCL_NPM_DIR:-/var/cache/portcullis-npm}
if [ ! -f "$NPM_DIR/node_modules/oidc-provider/package.json" ]; then
  echo "install-deps: installing oidc-provider into $NPM_DIR"
  mkdir -p "$NPM_DIR"
  [ -f "$NPM_DIR/package.json" ] || echo '{"private": true}' >"$NPM_DIR/package.json"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error oidc-provider@8.8.1
fi
# npm `@sigstore/oci`, what GitHub's attestation actions attach bundles with (0.6: Node.js 20;
# its fetch.js requires promise-retry, which make-fetch-happen 15 no longer brings along).
if [ ! -f "$NPM_DIR/node_modules/promise-retry/package.json" ]; then
  echo "install-deps: installing @sigstore/oci into $NPM_DIR"
  npm install --prefix "$NPM_DIR" --no-audit --no-fund --loglevel=error @sigstore/oci@0.6.0 promise-retry@2.0.1
fi
