#!/usr/bin/env bash
# `make run`: the dashboard on the embedded backend, with the scheduler (process, compact,
# roll up, alerts, collectors) and an event simulator posting through the real ingest API.
# Ctrl-C stops all three. The access log goes to var/log/access.log; once the dashboard
# answers, a short banner says where it is and how you are signed in.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
PORT=${PORT:-8050}

mkdir -p var/prometheus
export PROMETHEUS_MULTIPROC_DIR="$PWD/var/prometheus"
# Roll up every minute so the KPIs visibly move while you watch.
export ROLLUP_INTERVAL_SECONDS=${ROLLUP_INTERVAL_SECONDS:-60}
# The generator's hosts (`make sample`), told apart from this machine on the Health page.
export SAMPLE_HOSTS=${SAMPLE_HOSTS:-web-1,web-2}
if [[ ! -s var/simulator.key ]]; then
    # The token goes to the file only; its echo on stderr is shown only if creating fails.
    if ! created=$("$BIN/mission-control" api-key create --name simulator --scope ingest \
        --token-file var/simulator.key 2>&1 >/dev/null); then
        echo "$created" >&2
        exit 1
    fi
fi

# A line per page poll and simulator post: kept in a file, out of the terminal.
export ACCESS_LOG=${ACCESS_LOG:-$PWD/var/log/access.log}
mkdir -p "$(dirname "$ACCESS_LOG")"

trap 'kill $(jobs -p) 2>/dev/null; wait' EXIT INT TERM
"$BIN/python" -m scripts.dev_banner --url "http://127.0.0.1:$PORT" &
"$BIN/mission-control" scheduler &
MC_API_KEY="$(cat var/simulator.key)" "$BIN/mission-control" simulate \
    --url "http://127.0.0.1:$PORT" --rate 5 --duration 86400 &
"$BIN/mission-control" serve --port "$PORT"
