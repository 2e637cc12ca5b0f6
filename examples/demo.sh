#!/usr/bin/env bash
# `make demo`: start dockyard with embedded defaults (SQLite, local process executor),
# deploy examples/weather_workspace, run two of its jobs, show their logs, keep serving.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)
DOCKYARD="$ROOT/.venv/bin/dockyard"
DATA="$ROOT/.dockyard-demo"
PORT="${DOCKYARD_PORT:-8765}"
mkdir -p "$DATA"
command -v git >/dev/null || { echo "dockyard needs git (the server serves workspace repositories with it): apt-get install git" >&2; exit 1; }

# the admin token: yours if you set one (DOCKYARD_ADMIN_TOKEN, or a CLI login to this server),
# else the demo's in $DATA/admin-token; never silently replaced (dockyard/cli/demotoken.py)
ADMIN_TOKEN=$("$ROOT/.venv/bin/python" -m dockyard.cli.demotoken "$DATA" "http://127.0.0.1:$PORT") || exit 1
export DOCKYARD_ADMIN_TOKEN="$ADMIN_TOKEN"
export DOCKYARD_SERVER="http://127.0.0.1:$PORT" DOCKYARD_TOKEN="$DOCKYARD_ADMIN_TOKEN" DOCKYARD_WORKSPACE=demo
unset VIRTUAL_ENV

if "$ROOT/.venv/bin/python" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('127.0.0.1', $PORT)) != 0)"; then
  echo "port $PORT is in use; stop what runs there or set DOCKYARD_PORT=<free port>" >&2
  exit 1
fi

echo "==> starting dockyard server on $DOCKYARD_SERVER (state in $DATA, log in $DATA/server.log)"
"$DOCKYARD" server --data-dir "$DATA/state" --port "$PORT" >"$DATA/server.log" 2>&1 &
SERVER=$!
trap 'echo; echo "==> stopping the server"; kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; exit 0' INT TERM
for _ in $(seq 1 100); do
  curl -fsS "$DOCKYARD_SERVER/healthz" >/dev/null 2>&1 && break
  kill -0 $SERVER 2>/dev/null || { cat "$DATA/server.log"; echo "server did not start" >&2; exit 1; }
  sleep 0.2
done

cd "$ROOT/examples/weather_workspace"
if ! "$DOCKYARD" workspace info >/dev/null 2>&1; then
  echo "==> dockyard workspace create demo   (no deploy creates a workspace)"
  "$DOCKYARD" workspace create demo
fi
echo "==> dockyard deploy   (workspace 'demo', recorded in examples/weather_workspace/.dlt/config.toml)"
"$DOCKYARD" deploy
echo "==> dockyard job list"
"$DOCKYARD" job list
echo "==> dockyard launch ingest_weather -f   (the first run builds the job's environment)"
"$DOCKYARD" launch ingest_weather -f
echo "==> dockyard logs weather_report -f   (a follow-up: it started when the ingest succeeded)"
"$DOCKYARD" logs weather_report -f
echo "==> dockyard job-run ingest_weather info"
"$DOCKYARD" job-run ingest_weather info
cat <<INFO

dockyard is running:
  dashboard              $DOCKYARD_SERVER/ui/  (log in with the token in $DATA/admin-token)
  API and OpenAPI docs   $DOCKYARD_SERVER/docs
  git (what is deployed) git -c http.extraHeader="Authorization: Bearer \$DOCKYARD_TOKEN" clone $DOCKYARD_SERVER/git/demo.git
  try the CLI in another shell:
    export DOCKYARD_SERVER=$DOCKYARD_SERVER DOCKYARD_TOKEN=\$(cat $DATA/admin-token) DOCKYARD_WORKSPACE=demo
    $DOCKYARD job-run list
    $DOCKYARD logs show_config
Press Ctrl-C to stop.
INFO
wait $SERVER
