#!/usr/bin/env bash
# One-time set-up for a fresh machine, safe to re-run:
#   1. a virtual environment in .venv with requirements-dev.txt (skipped when
#      the requirements did not change since the last install);
#   2. the checkout linked as the collection tradeops.stack under .cache/;
#   3. host tools for the image build (debootstrap, busybox-static);
#   4. a Docker engine that answers (installs Debian's docker.io and starts
#      dockerd without systemd when none runs and we are root with apt).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
PY=${PYTHON:-python3}

log() { printf '[bootstrap] %s\n' "$*"; }

# --- 1. virtual environment ---------------------------------------------------
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
req_hash=$(cat requirements.txt requirements-dev.txt | sha256sum | cut -c1-16)
if [ "$(cat .venv/.req-hash 2>/dev/null)" != "$req_hash" ]; then
  log "installing requirements-dev.txt"
  .venv/bin/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
  echo "$req_hash" > .venv/.req-hash
else
  log "requirements unchanged, skipping pip"
fi

# --- 2. the checkout as a collection -------------------------------------------
mkdir -p .cache/collections/ansible_collections/tradeops
ln -sfn "$ROOT" .cache/collections/ansible_collections/tradeops/stack

# --- 3. host tools the image build needs -----------------------------------------
missing=()
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
[ -x /bin/busybox ] || missing+=(busybox-static)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    log "installing ${missing[*]} from Debian"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${missing[@]}" >/dev/null
  else
    echo "ERROR: missing ${missing[*]} and I cannot install them (need root and apt-get)." >&2
    echo "Install them (Debian/Ubuntu: apt-get install ${missing[*]}) and re-run." >&2
    exit 1
  fi
fi

# --- 4. Docker engine -----------------------------------------------------------
docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
if ! docker_answers; then
  if ! docker_answers; then
    if [ "$(id -u)" != 0 ]; then
      echo "ERROR: dockerd is installed but not running; start it (systemctl start docker) and re-run." >&2
      exit 1
    fi
    log "starting dockerd (no systemd here)"
    setsid dockerd >/var/log/dockerd.log 2>&1 < /dev/null &
    for _ in $(seq 1 60); do docker_answers && break; sleep 1; done
    docker_answers || { echo "ERROR: dockerd did not answer within 60 s; see /var/log/dockerd.log" >&2; exit 1; }
  fi
fi
log "Docker engine $(docker version -f '{{.Server.Version}}') answers"
