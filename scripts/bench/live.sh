#!/usr/bin/env bash
# Live mode at real time: `warble-agent run` capturing from a file-backed ALSA device fed
# through a FIFO at real-time pace (agent/examples/paced_fifo.rs), with the demo model, per
# engine. Prints the agent's cost line: CPU share of one core, peak RSS, window latency.
# Usage: scripts/bench/live.sh [SECONDS]   (default 120; after scripts/install-deps)
set -euo pipefail
cd "$(dirname "$0")/../.."
seconds="${1:-120}"
export ORT_DYLIB_PATH="$(cat "${WARBLE_CACHE:-$HOME/.cache/warble}/ort-dylib-path")"
cargo build --release --locked -p warble-agent --bin warble-agent --example paced_fifo
bin="${CARGO_TARGET_DIR:-target}/release"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
. scripts/lib/station.sh
file_microphone "$work"
for engine in ort tract; do
    bench_station "$work/station.toml" "$work/data-$engine" "$engine"
    echo "== engine $engine, 1 thread, $seconds s at real time"
    # The writer outlives the agent's capture a little; it stops when the agent closes.
    "$bin"/examples/paced_fifo demo/soundscape.flac "$work/mic.fifo" 32000 \
        $((seconds + 30)) &
    pacer=$!
    ALSA_CONFIG_PATH="$work/asound.conf" "$bin"/warble-agent run \
        --config "$work/station.toml" --duration "$seconds" --out /dev/null
    wait "$pacer" || true
done
