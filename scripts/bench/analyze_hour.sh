#!/usr/bin/env bash
# Batch-analysis throughput: one hour of 32 kHz audio (the demo soundscape repeated 60×)
# through `warble-agent analyze` with the demo model, one inference thread, per engine.
# Prints the agent's own summary (real-time factor, audio-seconds per CPU-second, peak RSS)
# plus /usr/bin/time's CPU and memory figures.
# Usage: scripts/bench/analyze_hour.sh   (after scripts/install-deps)
set -euo pipefail
cd "$(dirname "$0")/../.."
export ORT_DYLIB_PATH="$(cat "${WARBLE_CACHE:-$HOME/.cache/warble}/ort-dylib-path")"
cargo build --release --locked -p warble-agent
bin="${CARGO_TARGET_DIR:-target}/release"
hour="${TMPDIR:-/tmp}/warble-hour.flac"
if [ ! -f "$hour" ]; then
    sox demo/soundscape.flac "$hour" repeat 59
fi
soxi -d "$hour"
for engine in ort tract; do
    echo "== engine $engine, 1 thread"
    /usr/bin/time -f "time: %e s wall, %U s user, %S s sys, max RSS %M KB" \
        "$bin"/warble-agent analyze "$hour" \
        --bundle models/demo/warble-demo-0.1.0.warble --trusted models/demo/warble-demo.pub \
        --engine "$engine" --threads 1 --out /dev/null
done
