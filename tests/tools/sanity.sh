#!/usr/bin/env bash
# ansible-test sanity on what ships: the collection is built with
# ansible-galaxy (build_ignore drops tests/, molecule/, examples/), installed
# under a temporary .../ansible_collections/tradeops/stack, and tested there.
# Offline, ansible-test cannot download its pip bootstrap script: we give it a
# shim that uses ensurepip, in a throw-away HOME (nothing lands in ~/.ansible).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD
work=$(mktemp -d /tmp/tradeops-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/tradeops/stack"
mkdir -p "$work/home/.ansible/test/cache"
printf '[defaults]\n' > "$work/ansible.cfg"
export ANSIBLE_CONFIG="$work/ansible.cfg"
"$ROOT/.venv/bin/ansible-galaxy" collection build "$ROOT" --output-path "$work" >/dev/null
"$ROOT/.venv/bin/ansible-galaxy" collection install --force --no-deps -p "$work" "$work"/tradeops-stack-*.tar.gz >/dev/null
cat > "$work/home/.ansible/test/cache/get_pip_24_2.py" <<'PY'
# Stands in for get-pip.py: ensurepip, then pip installs what was asked.
# get-pip's own flags (--no-setuptools, --no-wheel) mean nothing to pip.
import subprocess, sys
args = [a for a in sys.argv[1:] if a not in ("--no-setuptools", "--no-wheel")]
subprocess.check_call([sys.executable, "-m", "ensurepip", "--upgrade"])
subprocess.check_call([sys.executable, "-m", "pip", "install", "--disable-pip-version-check"] + args)
PY
cd "$dest"
git init -q . && echo "tests/output/" > .git/info/exclude && git add -A >/dev/null  # ansible-test lists files through git
HOME="$work/home" "$ROOT/.venv/bin/ansible-test" sanity --python 3.11 --venv --requirements \
  --color no "$@"
