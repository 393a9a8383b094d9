#!/usr/bin/env bash
# ansible-test sanity needs the collection under .../ansible_collections/tradeops/stack
# and, offline, cannot download its pip bootstrap script: we give it a shim that
# uses ensurepip, in a throw-away HOME so nothing leaks into the user's ~/.ansible.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
work=$(mktemp -d /tmp/tradeops-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/tradeops/stack"
mkdir -p "$dest" "$work/home/.ansible/test/cache"
# a clean copy of what git tracks plus new, not ignored files (never .venv or .cache)
git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -C "$dest" -xf -
cat > "$work/home/.ansible/test/cache/get_pip_24_2.py" <<'PY'
import subprocess, sys
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + sys.argv[1:])
PY
cd "$dest"
git init -q . && git add -A >/dev/null  # ansible-test lists files through git
HOME="$work/home" "$ROOT/.venv/bin/ansible-test" sanity --python 3.11 --venv --requirements \
  --color no "$@"
