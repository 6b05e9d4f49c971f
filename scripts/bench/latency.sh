#!/usr/bin/env bash
# Live latency: a station (`warble-agent run`, release build) capturing the demo recording
# from a file-backed ALSA device fed at real time (agent/examples/paced_fifo.rs), delivering
# to a mosquitto started here on a free loopback port, and an independent subscriber
# (mosquitto_sub, arrival times to the nanosecond). Per event: from the end of the first
# window that detected it (its start + the window) and from its end (the last window) to
# its arrival at the subscriber; then p50/p99/max of both.
# Usage: scripts/bench/latency.sh [SECONDS]   (default 60; after scripts/install-deps)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-60}"
export ORT_DYLIB_PATH="$(cat "${WARBLE_CACHE:-$HOME/.cache/warble}/ort-dylib-path")"
cargo build --release --locked -p warble-agent --bin warble-agent --example paced_fifo
bin="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    rm -rf "$work"
}
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
cat > "$work/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
set_tcp_nodelay true
CONF
mosquitto -c "$work/mosquitto.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
. scripts/bench/file_microphone.sh
file_microphone "$work"
cat > "$work/station.toml" <<TOML
[station]
id = "bench"

[audio]
sample_rate_hz = 32000

[model]
bundle = "$PWD/models/demo/warble-demo-0.1.0.warble"
trusted_keys = ["$PWD/models/demo/warble-demo.pub"]

[detection]
hop_s = 1.0

[mqtt]
broker = "mqtt://127.0.0.1:$port"

[storage]
data_dir = "$work/data"

[runtime]
engine = "ort"
threads = 1
TOML
sleep 0.5
mosquitto_sub -p "$port" -t 'warble/bench/detections' -q 1 -F '%U %p' >"$work/arrivals.txt" &
pids+=($!)
sleep 0.5
"$bin"/examples/paced_fifo demo/soundscape.flac "$work/mic.fifo" 32000 $((seconds + 30)) &
pids+=($!)
ALSA_CONFIG_PATH="$work/asound.conf" "$bin"/warble-agent run \
    --config "$work/station.toml" --duration "$seconds" --out /dev/null 2>"$work/agent.log"
sleep 1
python3 - "$work/arrivals.txt" <<'PY'
import json, sys
from datetime import datetime

WINDOW_S = 3.0  # the demo model's window
first, final = [], []
for line in open(sys.argv[1]):
    arrived, payload = line.split(" ", 1)
    e = json.loads(payload)
    if e.get("historical"):
        continue
    at = float(arrived)
    start = datetime.fromisoformat(e["start"].replace("Z", "+00:00")).timestamp()
    end = datetime.fromisoformat(e["end"].replace("Z", "+00:00")).timestamp()
    first.append(at - (start + WINDOW_S))
    final.append(at - end)
    print(f"{e['code']:>6}  {e['start'][11:23]}  from first window {first[-1]:6.2f} s"
          f"  from last window {final[-1]:6.2f} s")

def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]

if not first:
    sys.exit("no live detection arrived")
print(f"\n{len(first)} live events")
for name, xs in (("from the first window that heard it", first), ("from its last window", final)):
    print(f"{name:>38}: p50 {q(xs, .5):.2f} s, p99 {q(xs, .99):.2f} s, max {max(xs):.2f} s")
PY
