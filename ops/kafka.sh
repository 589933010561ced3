#!/usr/bin/env bash
# A single-node Apache Kafka broker (KRaft, broker and controller in one JVM) on loopback,
# for development and CI. Jars come from Maven Central through ops/kafka/pom.xml.
#
#   ops/kafka.sh start    start (or find running) and print the bootstrap address last
#   ops/kafka.sh stop     stop it (controlled shutdown, then SIGKILL after a timeout)
#   ops/kafka.sh status   exit 0 and print the address when it answers, else exit 1
#   ops/kafka.sh env      print `export KAFKA_BOOTSTRAP_SERVERS=...` (for eval)
#
# Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (KAFKA_PORT + 1), KAFKA_HEAP_OPTS,
# KAFKA_START_TIMEOUT (seconds, 120), DRIPSTREAM_CACHE (~/.cache/dripstream: the jars),
# KAFKA_HOME_DIR (var/kafka in the clone: config, data and logs).
set -euo pipefail

readonly KAFKA_VERSION=3.9.1
readonly HOST=127.0.0.1
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
readonly ROOT
readonly PORT=${KAFKA_PORT:-9092}
readonly CONTROLLER_PORT=${KAFKA_CONTROLLER_PORT:-$((PORT + 1))}
readonly CACHE=${DRIPSTREAM_CACHE:-${HOME:-/root}/.cache/dripstream}
readonly LIBS=$CACHE/kafka-$KAFKA_VERSION/libs
# A broker on another port gets its own directory, so two can run side by side.
if [[ $PORT == 9092 ]]; then default_home=$ROOT/var/kafka; else default_home=$ROOT/var/kafka-$PORT; fi
readonly HOME_DIR=${KAFKA_HOME_DIR:-$default_home}
readonly CONFIG=$HOME_DIR/server.properties
readonly LOG4J=$HOME_DIR/log4j.properties
readonly DATA=$HOME_DIR/data
readonly LOGS=$HOME_DIR/logs
readonly PIDFILE=$HOME_DIR/kafka.pid
readonly START_TIMEOUT=${KAFKA_START_TIMEOUT:-120}
readonly ADDRESS=$HOST:$PORT

say() { printf 'kafka.sh: %s\n' "$*" >&2; }
die() {
  say "error: $*"
  exit 1
}

# The pid of our broker when it runs, else nothing. A pid file left by a crash, or a pid
# reused by another program, does not count: the command line must name our config.
broker_pid() {
  [[ -f $PIDFILE ]] || return 0
  local pid
  pid=$(<"$PIDFILE")
  [[ $pid =~ ^[0-9]+$ ]] || return 0
  if [[ -r /proc/$pid/cmdline ]] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "kafka.Kafka $CONFIG"; then
    printf '%s\n' "$pid"
  fi
}

port_open() { (exec 3<>"/dev/tcp/$HOST/$1") 2>/dev/null; }

who_listens() {
  if command -v ss >/dev/null 2>&1; then
    ss -Hltnp "sport = :$1" 2>/dev/null | sed 's/^/    /' >&2 || true
  fi
}

# Asks the broker for cluster metadata with a raw Metadata v1 request (stdlib only, so it
# works before any virtualenv exists). Succeeds when a broker and an active controller are
# listed, which a KRaft broker only reports once it has caught up with the metadata log.
broker_answers() {
  python3 - "$HOST" "$PORT" <<'PY' 2>/dev/null
import socket, struct, sys

host, port = sys.argv[1], int(sys.argv[2])
client = b"dripstream-ops"
# Metadata request v1: api_key 3, version 1, correlation id 7, client id, topics = null.
body = struct.pack(">hhih", 3, 1, 7, len(client)) + client + struct.pack(">i", -1)
with socket.create_connection((host, port), timeout=3) as sock:
    sock.settimeout(3)
    sock.sendall(struct.pack(">i", len(body)) + body)

    def read(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError
            data += chunk
        return data

    (size,) = struct.unpack(">i", read(4))
    payload = read(size)
correlation, brokers = struct.unpack_from(">ii", payload, 0)
offset = 8
for _ in range(brokers):
    offset += 4  # node id
    (host_len,) = struct.unpack_from(">h", payload, offset)
    offset += 2 + host_len + 4  # host, port
    (rack_len,) = struct.unpack_from(">h", payload, offset)
    offset += 2 + max(rack_len, 0)
(controller,) = struct.unpack_from(">i", payload, offset)
sys.exit(0 if correlation == 7 and brokers > 0 and controller >= 0 else 1)
PY
}

need_tools() {
  command -v python3 >/dev/null 2>&1 || die "python3 not found: it checks that the broker answers"
  command -v java >/dev/null 2>&1 ||
    die "java not found: install a JDK 17 (e.g. apt-get install -y openjdk-17-jre-headless)"
  local version
  version=$(java -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')
  if [[ $version =~ ^1\. ]] || { [[ $version =~ ^[0-9]+ ]] && ((${version%%.*} < 11)); }; then
    die "java ${version:-?} is too old: Kafka $KAFKA_VERSION needs Java 11 or later (17 recommended)"
  fi
}

fetch_jars() {
  if [[ -f $LIBS/.complete ]]; then return 0; fi
  command -v mvn >/dev/null 2>&1 ||
    die "mvn not found: install Maven (e.g. apt-get install -y maven) to fetch the Kafka jars"
  say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $LIBS"
  mkdir -p "$(dirname "$LIBS")"
  local tmp
  tmp=$(mktemp -d "$(dirname "$LIBS")/libs.tmp.XXXXXX")
  if ! mvn -q -B -f "$ROOT/ops/kafka/pom.xml" dependency:copy-dependencies \
    -DincludeScope=runtime -DoutputDirectory="$tmp" >"$tmp.log" 2>&1; then
    say "Maven could not fetch the jars (no network, a proxy, or Maven Central refused):"
    tail -n 30 "$tmp.log" | sed -e 's/\x1b\[[0-9;]*m//g' -e 's/^/    /' >&2
    say "(a proxy or a mirror goes in ~/.m2/settings.xml; the full log is $tmp.log)"
    rm -rf "$tmp"
    exit 1
  fi
  [[ -f $tmp/kafka_2.13-$KAFKA_VERSION.jar ]] || die "Maven ran but kafka_2.13-$KAFKA_VERSION.jar is missing from $tmp"
  rm -f "$tmp.log"
  touch "$tmp/.complete"
  rm -rf "$LIBS"
  mv "$tmp" "$LIBS"
}

write_config() {
  mkdir -p "$DATA" "$LOGS"
  cat >"$CONFIG" <<EOF
# Written by ops/kafka.sh on every start; edit the script, not this file.
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@$HOST:$CONTROLLER_PORT
listeners=PLAINTEXT://$HOST:$PORT,CONTROLLER://$HOST:$CONTROLLER_PORT
advertised.listeners=PLAINTEXT://$HOST:$PORT
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA

# One node: every internal topic has a single replica.
num.partitions=6
default.replication.factor=1
min.insync.replicas=1
auto.create.topics.enable=true
delete.topic.enable=true
offsets.topic.replication.factor=1
offsets.topic.num.partitions=12
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=12
group.initial.rebalance.delay.ms=0

# A small machine: few threads, a small log-cleaner buffer, a week of data.
num.network.threads=2
num.io.threads=4
num.recovery.threads.per.data.dir=1
background.threads=4
log.cleaner.threads=1
log.cleaner.dedupe.buffer.size=16777216
log.retention.hours=168
log.segment.bytes=134217728
EOF
  cat >"$LOG4J" <<'EOF'
# Written by ops/kafka.sh. Everything goes to logs/server.log; the console stays quiet.
log4j.rootLogger=INFO, file
log4j.appender.file=org.apache.log4j.RollingFileAppender
log4j.appender.file.File=${kafka.logs.dir}/server.log
log4j.appender.file.MaxFileSize=20MB
log4j.appender.file.MaxBackupIndex=3
log4j.appender.file.layout=org.apache.log4j.PatternLayout
log4j.appender.file.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
log4j.logger.kafka.network.RequestChannel$=WARN
log4j.logger.state.change.logger=WARN
log4j.logger.org.apache.kafka.clients=WARN
EOF
}

# The storage tool logs through the same configuration, into logs/tools/ so that
# logs/server.log only ever holds the broker's own lines.
run_java() {
  java -Xms256m -Xmx512m -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$LOGS/tools" \
    -cp "$LIBS/*" "$@"
}

format_storage() {
  [[ -f $DATA/meta.properties ]] && return 0
  local cluster_id
  cluster_id=$(run_java kafka.tools.StorageTool random-uuid 2>>"$LOGS/format.log" | tail -n 1)
  [[ -n $cluster_id ]] || die "could not create a cluster id; see $LOGS/format.log"
  if ! run_java kafka.tools.StorageTool format -t "$cluster_id" -c "$CONFIG" --ignore-formatted \
    >>"$LOGS/format.log" 2>&1; then
    tail -n 20 "$LOGS/format.log" | sed 's/^/    /' >&2
    die "formatting the storage in $DATA failed"
  fi
}

log_tail() {
  local file
  for file in "$LOGS/console.log" "$LOGS/server.log"; do
    if [[ -s $file ]]; then
      say "last lines of $file:"
      tail -n 40 "$file" | sed 's/^/    /' >&2
    fi
  done
}

wait_until_ready() {
  local pid=$1 deadline=$((SECONDS + START_TIMEOUT))
  until broker_answers; do
    if ! kill -0 "$pid" 2>/dev/null; then
      log_tail
      rm -f "$PIDFILE"
      die "the broker exited during start-up (logs in $LOGS)"
    fi
    if ((SECONDS >= deadline)); then
      log_tail
      die "the broker (pid $pid) did not answer on $ADDRESS within ${START_TIMEOUT}s; stop it with: $0 stop"
    fi
    sleep 0.5
  done
}

start() {
  mkdir -p "$HOME_DIR"
  # Two concurrent starts (parallel test sessions) must not launch two brokers.
  if command -v flock >/dev/null 2>&1; then
    exec 9>"$HOME_DIR/start.lock"
    flock -w "$((START_TIMEOUT + 60))" 9 || die "another start is still holding $HOME_DIR/start.lock"
  fi
  local pid
  pid=$(broker_pid)
  if [[ -n $pid ]]; then
    wait_until_ready "$pid"
    say "already running (pid $pid)"
    printf '%s\n' "$ADDRESS"
    return 0
  fi
  local port
  for port in "$PORT" "$CONTROLLER_PORT"; do
    if port_open "$port"; then
      who_listens "$port"
      die "port $HOST:$port is already taken by another program; choose others with KAFKA_PORT=... (controller: KAFKA_CONTROLLER_PORT)"
    fi
  done
  need_tools
  fetch_jars
  write_config
  format_storage
  local heap=${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g}
  local -a heap_opts
  read -r -a heap_opts <<<"$heap"
  say "starting Kafka $KAFKA_VERSION on $ADDRESS (controller $HOST:$CONTROLLER_PORT, data in $DATA)"
  # setsid: the broker must outlive the shell, the test session or the CI step that started it.
  setsid java "${heap_opts[@]}" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError \
    -Djava.awt.headless=true -Dlog4j.configuration="file:$LOG4J" -Dkafka.logs.dir="$LOGS" \
    -cp "$LIBS/*" kafka.Kafka "$CONFIG" >"$LOGS/console.log" 2>&1 </dev/null 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$PIDFILE"
  wait_until_ready "$pid"
  say "ready (pid $pid, logs in $LOGS)"
  printf '%s\n' "$ADDRESS"
}

stop() {
  local pid
  pid=$(broker_pid)
  if [[ -z $pid ]]; then
    rm -f "$PIDFILE"
    say "not running"
    return 0
  fi
  say "stopping the broker (pid $pid)"
  kill -TERM "$pid"
  local deadline=$((SECONDS + 60))
  while kill -0 "$pid" 2>/dev/null; do
    if ((SECONDS >= deadline)); then
      say "no controlled shutdown after 60s: killing pid $pid"
      kill -KILL "$pid" 2>/dev/null || true
      break
    fi
    sleep 0.5
  done
  rm -f "$PIDFILE"
  say "stopped"
}

status() {
  local pid
  pid=$(broker_pid)
  if [[ -z $pid ]]; then
    say "not running"
    return 1
  fi
  if ! broker_answers; then
    say "pid $pid runs but does not answer on $ADDRESS (starting, or stuck: see $LOGS/server.log)"
    return 1
  fi
  say "running (pid $pid)"
  printf '%s\n' "$ADDRESS"
}

case ${1:-} in
  start) start ;;
  stop) stop ;;
  status) status ;;
  env) printf 'export KAFKA_BOOTSTRAP_SERVERS=%s\n' "$ADDRESS" ;;
  *)
    printf 'usage: %s start|stop|status|env\n' "$0" >&2
    exit 2
    ;;
esac
