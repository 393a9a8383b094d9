#!/bin/bash
# Minimal re-implementation of the official postgres image's entrypoint contract:
#   POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE (required on first start),
#   POSTGRES_USER (default postgres), POSTGRES_DB (default $POSTGRES_USER),
#   POSTGRES_INITDB_ARGS, PGDATA, scripts in /docker-entrypoint-initdb.d (*.sh, *.sql).
# The password is never printed and never passed on a command line.
set -Eeuo pipefail

log() { printf '{"ts":"%s","service":"postgres-entrypoint","event":"%s"}\n' "$(date -u +%FT%TZ)" "$*"; }

file_env() {  # VAR: value from $VAR or from the file named by $VAR_FILE, never both
  local var=$1 file_var="${1}_FILE"
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    log "error: both $var and $file_var are set (they are exclusive)"; exit 1
  fi
  if [ -n "${!file_var:-}" ]; then
    if [ ! -r "${!file_var}" ]; then log "error: $file_var points at an unreadable file"; exit 1; fi
    export "$var"="$(< "${!file_var}")"
  fi
  unset "$file_var"
}

if [ "${1:-postgres}" != "postgres" ]; then exec "$@"; fi
shift || true

SOCKET_DIR=/var/run/postgresql
[ -w "$SOCKET_DIR" ] || SOCKET_DIR=/tmp
export PGHOST=$SOCKET_DIR

if [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_PASSWORD
  : "${POSTGRES_USER:=postgres}"
  : "${POSTGRES_DB:=$POSTGRES_USER}"
  if [ -z "${POSTGRES_PASSWORD:-}" ]; then
    log "error: database is uninitialized and no POSTGRES_PASSWORD_FILE (or POSTGRES_PASSWORD) is set"; exit 1
  fi
  log "initializing database in $PGDATA"
  pwfile=$(mktemp /tmp/pwfile.XXXXXX)
  printf '%s\n' "$POSTGRES_PASSWORD" > "$pwfile"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a word list on purpose
  initdb --username="$POSTGRES_USER" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-} >/dev/null
  rm -f "$pwfile"
  echo "listen_addresses = '*'" >> "$PGDATA/postgresql.conf"
  echo "host all all all scram-sha-256" >> "$PGDATA/pg_hba.conf"
  # a temporary server on the socket only: clients on TCP (and pg_isready -h 127.0.0.1) wait
  pg_ctl -D "$PGDATA" -w -o "-c listen_addresses='' -c unix_socket_directories=$SOCKET_DIR" start >/dev/null
  if [ "$POSTGRES_DB" != "postgres" ]; then
    psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname postgres \
      --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) log "running $f"; . "$f" ;;
      *.sql) log "running $f"; psql -v ON_ERROR_STOP=1 -q --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" -f "$f" ;;
      *) ;;
    esac
  done
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  unset POSTGRES_PASSWORD
  log "initialization complete"
fi
unset POSTGRES_PASSWORD POSTGRES_PASSWORD_FILE
exec postgres -c unix_socket_directories="$SOCKET_DIR" "$@"
