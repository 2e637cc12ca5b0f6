#!/usr/bin/env bash
# docs/scaling.md, tried on one machine: five "hosts" (network namespaces on a bridge), two
# controllers sharing one PostgreSQL and one data directory behind a load balancer, three
# workers; then kill a host of each kind and watch the runs and schedules carry on.
#
#   sudo examples/scaling_lab.sh up          # build it all, print how to use it
#   sudo examples/scaling_lab.sh crash w-1   # a host dies: SIGKILL every process on it
#   sudo examples/scaling_lab.sh cut w-2     # take a host's link down (heal: `heal w-2`)
#   sudo examples/scaling_lab.sh down        # stop everything, remove the namespaces
#
# Needs root, iproute2, iptables, PostgreSQL 15 binaries (Debian's postgresql) and `make venv`.
# Hosts reach PyPI through the bridge (masqueraded) to build environments, as real hosts would.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
PY="$ROOT/.venv/bin/python"
LAB="${LAB_DIR:-/tmp/dockyard-lab}"
NET="${LAB_NET:-10.77.0}"
BRIDGE=dylab0
HOSTS=(ctl-a ctl-b w-1 w-2 w-3)
PG_BIN=/usr/lib/postgresql/15/bin
PORT=8765
FRONT="http://$NET.1:8700"

ip_of() { local i; for i in "${!HOSTS[@]}"; do [ "${HOSTS[$i]}" = "$1" ] && echo "$NET.$((11 + i))"; done; }
in_host() { local h=$1; shift; ip netns exec "dylab-$h" "$@"; }
rules() {  # $1: -I or -D
  iptables "$1" FORWARD -i "$BRIDGE" -j ACCEPT
  iptables "$1" FORWARD -o "$BRIDGE" -m conntrack --ctstate ESTABLISHED -j ACCEPT
  iptables -t nat "$1" POSTROUTING -s "$NET.0/24" ! -o "$BRIDGE" -j MASQUERADE
}

network() {
  ip link add "$BRIDGE" type bridge
  ip addr add "$NET.1/24" dev "$BRIDGE"
  ip link set "$BRIDGE" up
  rules -I
  for h in "${HOSTS[@]}"; do
    ip netns add "dylab-$h"
    ip link add "dylv-$h" type veth peer name "dylp-$h"
    ip link set "dylv-$h" master "$BRIDGE" up
    ip link set "dylp-$h" netns "dylab-$h"
    in_host "$h" ip link set "dylp-$h" name eth0
    in_host "$h" ip addr add "$(ip_of "$h")/24" dev eth0
    in_host "$h" ip link set eth0 up
    in_host "$h" ip link set lo up
    in_host "$h" ip route add default via "$NET.1"
  done
}

database() {  # a PostgreSQL on the bridge's address (the "database host")
  mkdir -p "$LAB/pg" && chown postgres "$LAB" "$LAB/pg" && chmod 711 "$LAB"
  runuser -u postgres -- "$PG_BIN/initdb" -D "$LAB/pg" --auth=trust -U postgres >/dev/null
  printf "host all all %s.0/24 trust\nhost all all samehost trust\n" "$NET" >> "$LAB/pg/pg_hba.conf"
  runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$LAB/pg" -o "-h $NET.1 -p 5433 -k $LAB/pg" \
    -l "$LAB/postgres.log" -w start >/dev/null
  runuser -u postgres -- psql -h "$NET.1" -p 5433 -U postgres -qc "CREATE DATABASE dockyard"
}

up() {
  [ "$(id -u)" = 0 ] || { echo "run it as root (network namespaces)" >&2; exit 1; }
  [ -x "$PY" ] || { echo "run make venv first" >&2; exit 1; }
  [ -x "$PG_BIN/initdb" ] || { echo "install PostgreSQL 15: apt-get install postgresql" >&2; exit 1; }
  ip link show "$BRIDGE" >/dev/null 2>&1 && { echo "a lab is up already: $0 down first" >&2; exit 1; }
  mkdir -p "$LAB"
  TOKEN="dy_lab_$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  echo "$TOKEN" > "$LAB/admin-token" && chmod 600 "$LAB/admin-token"
  network
  database
  for h in ctl-a ctl-b; do  # two controllers: one data directory, one database
    in_host "$h" env DOCKYARD_DB="postgresql://postgres@$NET.1:5433/dockyard" \
      DOCKYARD_NODE_NAME="$h" DOCKYARD_ADMIN_TOKEN="$TOKEN" DOCKYARD_EMBEDDED_RUNS=off \
      "$PY" -m dockyard server --data-dir "$LAB/data" --host "$(ip_of "$h")" --port "$PORT" \
      > "$LAB/$h.log" 2>&1 &
  done
  # the load balancer in front of them (any would do; this one skips a dead controller)
  "$PY" -c "import sys, time; sys.path.insert(0, '$ROOT'); from tests.netns import Balancer
Balancer('$NET.1', [('$(ip_of ctl-a)', $PORT), ('$(ip_of ctl-b)', $PORT)], port=8700)
while True: time.sleep(3600)" > "$LAB/balancer.log" 2>&1 &
  for _ in $(seq 1 150); do curl -fsS "$FRONT/healthz" >/dev/null 2>&1 && break; sleep 0.2; done
  WORKER_TOKEN=$(curl -fsS -X POST "$FRONT/api/v1/tokens" -H "Authorization: Bearer $TOKEN" \
    -H 'Content-Type: application/json' -d '{"name": "lab-workers", "role": "worker"}' |
    "$PY" -c 'import json, sys; print(json.load(sys.stdin)["token"])')
  for h in w-1 w-2 w-3; do
    in_host "$h" "$PY" -m dockyard worker --server "$FRONT" --token "$WORKER_TOKEN" --name "$h" \
      --slots 2 --data-dir "$LAB/$h" > "$LAB/$h.log" 2>&1 &
  done
  cat <<INFO
The lab is up (logs in $LAB): controllers ctl-a $(ip_of ctl-a), ctl-b $(ip_of ctl-b) behind
$FRONT; workers w-1, w-2, w-3; PostgreSQL on $NET.1:5433.

  export DOCKYARD_SERVER=$FRONT DOCKYARD_TOKEN=\$(cat $LAB/admin-token)
  $ROOT/.venv/bin/dockyard worker list
  $ROOT/.venv/bin/dockyard workspace create lab
  cd $ROOT/examples/weather_workspace && $ROOT/.venv/bin/dockyard deploy --workspace lab
  $ROOT/.venv/bin/dockyard launch ingest_weather -f      # runs on a worker: see its holder
  sudo $0 crash w-1      # or ctl-a: the runs it held end failed with the reason
  sudo $0 down
INFO
}

crash() { ip netns pids "dylab-$1" | xargs -r kill -9; echo "every process on $1 killed"; }

down() {
  for h in "${HOSTS[@]}"; do
    ip netns pids "dylab-$h" 2>/dev/null | xargs -r kill -9 || true
    ip netns del "dylab-$h" 2>/dev/null || true
    ip link del "dylv-$h" 2>/dev/null || true
  done
  pkill -f "from tests.netns import Balancer" || true
  [ -d "$LAB/pg" ] && runuser -u postgres -- "$PG_BIN/pg_ctl" -D "$LAB/pg" -m fast stop >/dev/null 2>&1 || true
  ip link del "$BRIDGE" 2>/dev/null || true
  rules -D 2>/dev/null || true
  echo "the lab is down (its files stay in $LAB)"
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  crash) crash "$2" ;;
  cut) ip link set "dylv-$2" down ;;
  heal) ip link set "dylv-$2" up ;;
  *) sed -n '2,12p' "$0"; exit 2 ;;
esac
