#!/usr/bin/env bash
# Run Molecule scenarios MOLECULE_JOBS at a time (default 2): they spend their time waiting on
# containers and nested engines, not on the CPU. Each scenario's output goes to
# .cache/molecule/<scenario>.log and is printed whole when it ends, so lanes do not interleave.
#   tests/tools/molecule_all.sh host secrets ...
set -uo pipefail
cd "$(dirname "$0")/../.."
# what `make` exports, for a direct call
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="${ANSIBLE_CONFIG:-$PWD/ansible.cfg}"
export ANSIBLE_COLLECTIONS_PATH="${ANSIBLE_COLLECTIONS_PATH:-$PWD/.cache/collections}"
jobs=${MOLECULE_JOBS:-2}
logs=.cache/molecule
mkdir -p "$logs"

run() {
  local scenario=$1 start rc
  start=$(date +%s)
  .venv/bin/molecule test -s "$scenario" >"$logs/$scenario.log" 2>&1
  rc=$?
  {
    echo "=== molecule test -s $scenario"
    cat "$logs/$scenario.log"
    echo "=== molecule $scenario: rc=$rc, $(($(date +%s) - start)) s"
  }
  return "$rc"
}

# Longest first, so the slow scenario does not start last.
mapfile -t scenarios < <(for s in "$@"; do
  case $s in multihost) echo "0 $s" ;; monitoring) echo "1 $s" ;; *) echo "2 $s" ;; esac
done | sort | cut -d' ' -f2)

failed=()
declare -A pids=()
for s in "${scenarios[@]}"; do
  while ((${#pids[@]} >= jobs)); do
    wait -n -p done_pid
    rc=$?
    ((rc == 0)) || failed+=("${pids[$done_pid]}")
    unset "pids[$done_pid]"
  done
  run "$s" &
  pids[$!]=$s
done
for pid in "${!pids[@]}"; do
  wait "$pid" || failed+=("${pids[$pid]}")
done

if ((${#failed[@]})); then
  echo "molecule: FAILED: ${failed[*]} (logs in $logs/)"
  exit 1
fi
echo "molecule: all ${#scenarios[@]} scenario(s) passed"
