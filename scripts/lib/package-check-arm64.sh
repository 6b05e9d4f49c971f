#!/usr/bin/env bash
# The check of `scripts/package arm64 --test`: the arm64 package's agent, unpacked (not
# installed), analyses the demo recording under qemu-user (Debian's qemu-user-static;
# arm64 libraries through multiarch) with tract and with the package's own ONNX Runtime
# (the aarch64 wheel's), and must give the same detections as this machine's amd64
# agent: the same species, start and end, confidences within 1e-4. Prints each run's
# audio-seconds per CPU-second — under emulation, which says nothing about a real Pi.
#
# Usage: package-check-arm64.sh DIST AMD64_AGENT
set -euo pipefail
cd "$(dirname "$0")/../.."
dist=$1 native=$2
deb=$(ls "$dist"/warble-agent_*_arm64.deb | tail -n 1)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dpkg-deb -x "$deb" "$work/root"
file "$work/root/usr/bin/warble-agent" | grep -q "ARM aarch64" \
    || { echo "arm64 check: $deb does not hold an aarch64 agent" >&2; exit 1; }

# CPU seconds (user + system) of a command, its output to OUT.log.
cpu_of() { # OUT COMMAND...
    local out=$1
    shift
    python3 - "$@" 2>"$out.log" <<'PY'
import resource, subprocess, sys
subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL)
r = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{r.ru_utime + r.ru_stime:.3f}")
PY
}
analyze() { # OUT ENGINE AGENT [RUNNER...]
    local out=$1 engine=$2 agent=$3
    shift 3
    local ort=()
    if [ -n "${ORT:-}" ]; then ort=(--onnxruntime "$ORT"); fi
    cpu_of "$out" "$@" "$agent" analyze demo/soundscape.flac \
        --bundle models/demo/warble-demo-0.1.0.warble --trusted models/demo/warble-demo.pub \
        --engine "$engine" --threads 1 --recorded-at 2026-06-01T05:00:00Z --out "$out" "${ort[@]}" \
        || { cat "$out.log" >&2; echo "arm64 check: $agent ($engine) failed" >&2; exit 1; }
}
audio_s=60
qemu=(qemu-aarch64-static -L /usr/aarch64-linux-gnu)
report() { # NAME CPU_S
    python3 -c "import sys; cpu=float(sys.argv[2]); print(f'  {sys.argv[1]:<32} {cpu:7.2f} CPU-s  {float(sys.argv[3])/max(cpu,1e-3):8.1f} audio-s per CPU-s')" "$1" "$2" "$audio_s"
}
echo "arm64 check: the demo recording (${audio_s} s), 1 thread:"
cpu=$(ORT="" analyze "$work/amd64-tract.jsonl" tract "$native"); report "amd64, tract" "$cpu"
cpu=$(ORT="$(cat "${WARBLE_CACHE:-$HOME/.cache/warble}/ort-dylib-path")" analyze "$work/amd64-ort.jsonl" ort "$native"); report "amd64, ONNX Runtime" "$cpu"
cpu=$(ORT="" analyze "$work/arm64-tract.jsonl" tract "$work/root/usr/bin/warble-agent" "${qemu[@]}"); report "arm64 under qemu, tract" "$cpu"
cpu=$(ORT="$work/root/usr/lib/warble/libonnxruntime.so" analyze "$work/arm64-ort.jsonl" ort "$work/root/usr/bin/warble-agent" "${qemu[@]}"); report "arm64 under qemu, ONNX Runtime" "$cpu"

python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
def detections(name):
    rows = []
    for line in open(f"{work}/{name}.jsonl"):
        e = json.loads(line)
        rows.append((e["code"], e["start_sample"], e["end_sample"], e["confidence"]))
    return rows
reference = detections("amd64-ort")
assert reference, "no detections on amd64"
for name in ["amd64-tract", "arm64-tract", "arm64-ort"]:
    got = detections(name)
    same = len(got) == len(reference) and all(
        a[:3] == b[:3] and abs(a[3] - b[3]) <= 1e-4 for a, b in zip(got, reference))
    if not same:
        sys.exit(f"arm64 check: {name} differs from amd64-ort:\n{got}\n{reference}")
print(f"arm64 check: {len(reference)} detections, the same on amd64 and arm64 (qemu), tract and ONNX Runtime")
PY
