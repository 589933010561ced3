#!/usr/bin/env bash
# A PostgreSQL cluster of its own (Debian's server packages) on loopback, for development
# and CI, with the roles and databases dripstream uses.
#
#   ops/postgres.sh start    initialise on first use, start (or find running), create the
#                            roles and databases; the test database URL is the last line
#   ops/postgres.sh stop     fast shutdown
#   ops/postgres.sh status   exit 0 and print the test URL when it answers, else exit 1
#   ops/postgres.sh env      print `export DATABASE_URL=...` of the development database
#                            (for eval); `env test`: of the test database
#
# Roles and databases: dripstream/dripstream (development) and dripstream_test/dripstream_test
# (tests; may create databases). Environment: PG_PORT (55432), PG_BIN (the server's bin
# directory, found under /usr/lib/postgresql), PG_HOME_DIR (var/postgres in the clone),
# PG_START_TIMEOUT (seconds, 60).
set -euo pipefail

readonly HOST=127.0.0.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly PORT=${PG_PORT:-55432}
readonly START_TIMEOUT=${PG_START_TIMEOUT:-60}
if [[ $PORT == 55432 ]]; then link=$ROOT/var/postgres; else link=$ROOT/var/postgres-$PORT; fi
readonly LINK=${PG_HOME_DIR:-$link}
readonly TEST_URL=postgresql://dripstream_test:dripstream_test@$HOST:$PORT/dripstream_test
readonly DEV_URL=postgresql://dripstream:dripstream@$HOST:$PORT/dripstream

say() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# initdb refuses to run as root, so as root every server command runs as the postgres user.
as_owner() {
  if [[ $EUID -eq 0 ]]; then
    # From /: the caller's directory may be one the postgres user cannot enter.
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

find_bin() {
  if [[ -n ${PG_BIN:-} ]]; then
    [[ -x $PG_BIN/initdb ]] || die "PG_BIN=$PG_BIN has no initdb"
    printf '%s\n' "$PG_BIN"
    return 0
  fi
  local dir best=""
  for dir in /usr/lib/postgresql/*/bin; do
    [[ -x $dir/initdb && -x $dir/pg_ctl ]] || continue
    # The newest server version wins (sort -V on the version directory).
    best=$(printf '%s\n%s\n' "$best" "$dir" | sed '/^$/d' | sort -V | tail -n 1)
  done
  printf '%s\n' "$best"
}

install_server() {
  [[ $EUID -eq 0 ]] || die "no PostgreSQL server found under /usr/lib/postgresql; install it (sudo apt-get install -y postgresql) or set PG_BIN"
  command -v apt-get >/dev/null 2>&1 || die "no PostgreSQL server found and no apt-get to install one; set PG_BIN to a server's bin directory"
  say "no PostgreSQL server found: installing Debian's postgresql package"
  local log
  log=$(mktemp /tmp/dripstream-apt.XXXXXX)
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql; } >"$log" 2>&1; then
    tail -n 30 "$log" | sed 's/^/    /' >&2
    die "installing postgresql with apt-get failed (full log: $log)"
  fi
  rm -f "$log"
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

who_listens() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null | sed 's/^/    /' >&2 || true
  fi
}

# Where the cluster lives. In the clone (var/postgres) when the server's user can reach it
# and the socket path fits the 107-byte limit; else under the postgres user's home, with
# var/postgres a symbolic link to it, so nobody has to open up the permissions of $HOME.
resolve_home() {
  if [[ -L $LINK ]]; then
    readlink -f "$LINK"
    return 0
  fi
  if [[ -d $LINK/data ]]; then
    printf '%s\n' "$LINK"
    return 0
  fi
  mkdir -p "$(dirname "$LINK")"
  chmod a+rx "$(dirname "$LINK")" 2>/dev/null || true
  mkdir -p "$LINK"
  local socket="$LINK/run/.s.PGSQL.$PORT"
  if [[ $EUID -eq 0 ]]; then
    chown postgres:postgres "$LINK"
    chmod 700 "$LINK"
    if ((${#socket} < 100)) && runuser -u postgres -- test -w "$LINK"; then
      printf '%s\n' "$LINK"
      return 0
    fi
    local home
    home=$(getent passwd postgres | cut -d: -f6)
    [[ -n $home && -d $home ]] || home=/var/lib/postgresql
    local key
    key=$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)
    local target="$home/dripstream/$key-$PORT"
    say "the postgres user cannot use $LINK (permissions of a parent, or a long path): the cluster lives in $target"
    rmdir "$LINK"
    mkdir -p "$target"
    chown postgres:postgres "$home/dripstream" "$target"
    chmod 700 "$target"
    ln -s "$target" "$LINK"
    printf '%s\n' "$target"
    return 0
  fi
  ((${#socket} < 100)) || die "the path $socket is too long for a Unix socket; set PG_HOME_DIR to a shorter directory"
  printf '%s\n' "$LINK"
}

BIN=""
PGHOME=""
DATA=""
RUN=""
LOGFILE=""
setup_paths() {
  local may_install=${1:-no}
  BIN=$(find_bin)
  if [[ -z $BIN && $may_install == no ]]; then
    die "no PostgreSQL server found under /usr/lib/postgresql (ops/postgres.sh start installs one)"
  fi
  if [[ -z $BIN ]]; then
    install_server
    BIN=$(find_bin)
    [[ -n $BIN ]] || die "postgresql is installed but no initdb was found under /usr/lib/postgresql/*/bin"
  fi
  if [[ $EUID -eq 0 ]]; then
    getent passwd postgres >/dev/null || die "there is no postgres OS user (Debian's postgresql-common creates it)"
  fi
  PGHOME=$(resolve_home)
  DATA=$PGHOME/data
  RUN=$PGHOME/run
  LOGFILE=$PGHOME/postgres.log
}

running() { [[ -f $DATA/postmaster.pid ]] && as_owner "$BIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

init_cluster() {
  [[ -f $DATA/PG_VERSION ]] && return 0
  say "initialising a cluster in $DATA ($("$BIN/postgres" --version))"
  as_owner mkdir -p "$DATA" "$RUN"
  as_owner chmod 700 "$DATA"
  local log="$PGHOME/initdb.log"
  if ! as_owner "$BIN/initdb" -D "$DATA" -U postgres --encoding=UTF8 --no-locale \
    --auth-local=peer --auth-host=scram-sha-256 >"$log" 2>&1; then
    tail -n 20 "$log" | sed 's/^/    /' >&2
    die "initdb failed (log: $log)"
  fi
  # Settings live in their own file, rewritten on each start.
  printf "\ninclude_if_exists = 'dripstream.conf'\n" | as_owner tee -a "$DATA/postgresql.conf" >/dev/null
}

write_config() {
  as_owner mkdir -p "$RUN"
  as_owner tee "$DATA/dripstream.conf" >/dev/null <<EOF
# Written by ops/postgres.sh on every start; edit the script, not this file.
listen_addresses = '$HOST'
port = $PORT
unix_socket_directories = '$RUN'
max_connections = 100
shared_buffers = 128MB
timezone = 'UTC'
log_timezone = 'UTC'
log_min_messages = warning
log_min_error_statement = error
EOF
}

psql_admin() {
  as_owner "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$RUN" -p "$PORT" -U postgres -d postgres
}

ensure_roles() {
  psql_admin >/dev/null <<'SQL'
SELECT 'CREATE ROLE dripstream LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dripstream') \gexec
SELECT 'CREATE ROLE dripstream_test LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'dripstream_test') \gexec
ALTER ROLE dripstream LOGIN PASSWORD 'dripstream';
ALTER ROLE dripstream_test LOGIN CREATEDB PASSWORD 'dripstream_test';
SELECT 'CREATE DATABASE dripstream OWNER dripstream' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'dripstream') \gexec
SELECT 'CREATE DATABASE dripstream_test OWNER dripstream_test' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'dripstream_test') \gexec
SQL
}

log_tail() {
  if [[ -s $LOGFILE ]]; then
    say "last lines of $LOGFILE:"
    tail -n 30 "$LOGFILE" | sed 's/^/    /' >&2
  fi
}

start() {
  setup_paths install
  if running; then
    say "already running (data in $DATA)"
  else
    if port_open "$PORT"; then
      who_listens "$PORT"
      die "port $HOST:$PORT is already taken by another program; choose another with PG_PORT=..."
    fi
    init_cluster
    write_config
    say "starting PostgreSQL on $HOST:$PORT (data in $DATA)"
    # The log file sits in a directory the server's user owns: pg_ctl opens it as that user.
    local out
    if ! out=$(as_owner "$BIN/pg_ctl" -D "$DATA" -l "$LOGFILE" -w -t "$START_TIMEOUT" start 2>&1); then
      printf '%s\n' "$out" | sed 's/^/    /' >&2
      log_tail
      die "the server did not start (see $LOGFILE)"
    fi
  fi
  local deadline=$((SECONDS + START_TIMEOUT))
  until as_owner "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; do
    if ((SECONDS >= deadline)); then
      log_tail
      die "the server does not accept connections on $HOST:$PORT"
    fi
    sleep 0.3
  done
  ensure_roles || die "creating the roles and databases failed"
  say "ready: $DEV_URL (development)"
  printf '%s\n' "$TEST_URL"
}

stop() {
  if [[ ! -e $LINK ]]; then
    say "not running"
    return 0
  fi
  setup_paths
  if ! running; then
    say "not running"
    return 0
  fi
  as_owner "$BIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  say "stopped"
}

status() {
  if [[ ! -e $LINK ]]; then
    say "not running"
    return 1
  fi
  setup_paths
  if ! running; then
    say "not running"
    return 1
  fi
  if ! as_owner "$BIN/pg_isready" -q -h "$HOST" -p "$PORT"; then
    say "the server runs but does not accept connections on $HOST:$PORT (see $LOGFILE)"
    return 1
  fi
  say "running (data in $DATA)"
  printf '%s\n' "$TEST_URL"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) printf 'export DATABASE_URL=%s\n' "$([[ ${2:-} == test ]] && echo "$TEST_URL" || echo "$DEV_URL")" ;;
  *)
    printf 'usage: %s start|stop|status|env\n' "$0" >&2
    exit 2
    ;;
esac
