#!/usr/bin/env bash
# Live latency: a station (`warble-agent run`, release build) capturing the demo recording
# from a file-backed ALSA device fed at real time (agent/examples/paced_fifo.rs), delivering
# to a mosquitto started here on a free loopback port, and an independent subscriber
# (mosquitto_sub, arrival times to the nanosecond). Per event: from the end of the first
# window that detected it to the arrival of its first report (sent at first sight), and
# from that window and from the event's last window to the arrival of its final report;
# then p50/p99/max of each, and the outbox commits per event.
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
. scripts/lib/station.sh
file_microphone "$work"
bench_station "$work/station.toml" "$work/data" ort "
[detection]
hop_s = 1.0

[mqtt]
broker = \"mqtt://127.0.0.1:$port\""
sleep 0.5
mosquitto_sub -p "$port" -t 'warble/bench/detections' -q 1 -F '%U %p' >"$work/arrivals.txt" &
pids+=($!)
sleep 0.5
"$bin"/examples/paced_fifo demo/soundscape.flac "$work/mic.fifo" 32000 $((seconds + 30)) &
pids+=($!)
ALSA_CONFIG_PATH="$work/asound.conf" "$bin"/warble-agent run \
    --config "$work/station.toml" --duration "$seconds" --out /dev/null 2>"$work/agent.log"
sleep 1
python3 - "$work/arrivals.txt" "$work/data/outbox.sqlite" <<'PY'
import json, sqlite3, sys
from datetime import datetime

WINDOW_S = 3.0  # the demo model's window

def t(s):
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()

# Per event id: the arrival of its first report and of its final one (the first report
# of an event is `"final": false`; the final report is revision 1, or revision 0 without
# `final` when the event was closed when first reported).
events = {}
for line in open(sys.argv[1]):
    arrived, payload = line.split(" ", 1)
    e = json.loads(payload)
    if e.get("historical"):
        continue
    r = events.setdefault(e["id"], {"reports": 0})
    r["reports"] += 1
    if "first" not in r:
        r["first"] = (float(arrived), e)
    if e.get("final", True) and "final" not in r:
        r["final"] = (float(arrived), e)

first, final_from_first, final_from_last = [], [], []
for r in events.values():
    at, e = r["first"]
    # The end of the first window that heard it: the first report's end.
    heard = t(e["end"]) if not e.get("final", True) else t(e["start"]) + WINDOW_S
    first.append(at - heard)
    line = f"{e['code']:>6}  {e['start'][11:23]}  first report {first[-1] * 1000:5.0f} ms"
    if "final" in r:
        at, f = r["final"]
        final_from_first.append(at - (t(f["start"]) + WINDOW_S))
        final_from_last.append(at - t(f["end"]))
        line += (f"  final from first window {final_from_first[-1]:6.2f} s"
                 f", from last window {final_from_last[-1]:6.2f} s")
    print(line)

def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p * (len(xs) - 1))))]

if not first:
    sys.exit("no live detection arrived")
# What the outbox was asked to hold per event: its archive keeps one row per id, and the
# revision says how many reports were committed for it (one commit per report).
db = sqlite3.connect(sys.argv[2])
commits = [rev + 1 for (rev,) in db.execute(
    "SELECT COALESCE(json_extract(payload, '$.revision'), 0) FROM sent UNION ALL "
    "SELECT COALESCE(json_extract(payload, '$.revision'), 0) FROM events")]
print(f"\n{len(first)} live events; outbox commits per event: max {max(commits)}, "
      f"mean {sum(commits) / len(commits):.2f}; messages per event: max "
      f"{max(r['reports'] for r in events.values())}")
for name, xs in (("first report, from the window that heard it", first),
                 ("final report, from that window", final_from_first),
                 ("final report, from its last window", final_from_last)):
    if xs:
        print(f"{name:>45}: p50 {q(xs, .5) * 1000:5.0f} ms, p99 {q(xs, .99) * 1000:5.0f} ms, "
              f"max {max(xs) * 1000:5.0f} ms")
PY
