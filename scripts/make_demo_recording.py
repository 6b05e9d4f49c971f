#!/usr/bin/env python3
"""Makes the demo recording from Warble's synthetic benchmark.

demo/soundscape.flac is 60 s of passive-soundscape audio: the first 20 three-second clips
of the `quick` benchmark's `test-soundscape-quiet` split (seed 1), back to back. The demo
model (models/demo) never saw these clips: it was trained on the focal `train` split.
demo/soundscape.truth.csv lists, per 3-s segment, the species calling in it.

Run (from the repository root):
  target/release/warble-train synth --preset quick --seed 1 --out /tmp/demo-bench
  python3 scripts/make_demo_recording.py /tmp/demo-bench
"""
import csv
import subprocess
import sys
import wave
from pathlib import Path

bench = Path(sys.argv[1] if len(sys.argv) > 1 else "/tmp/demo-bench")
split = "test-soundscape-quiet"
clips = 20
out_dir = Path("demo")
out_dir.mkdir(exist_ok=True)

with open(bench / f"{split}.csv", newline="") as f:
    rows = list(csv.DictReader(f))[:clips]

frames, params, truth, t = [], None, [], 0.0
for row in rows:
    with wave.open(str(bench / row["path"]), "rb") as w:
        if params is None:
            params = w.getparams()
        assert (w.getframerate(), w.getnchannels()) == (params.framerate, params.nchannels)
        data = w.readframes(w.getnframes())
        seconds = w.getnframes() / w.getframerate()
    frames.append(data)
    for code in filter(None, row["labels"].split(";")):
        truth.append((t, t + seconds, code))
    t += seconds

wav = out_dir / "soundscape.wav"
with wave.open(str(wav), "wb") as w:
    w.setparams(params)
    for data in frames:
        w.writeframes(data)
subprocess.run(["flac", "--silent", "-f", "-8", "-o", str(out_dir / "soundscape.flac"), str(wav)], check=True)
wav.unlink()
with open(out_dir / "soundscape.truth.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["start_s", "end_s", "code"])
    for start, end, code in truth:
        w.writerow([f"{start:.1f}", f"{end:.1f}", code])
print(f"demo/soundscape.flac: {t:.0f} s, {len(truth)} calls from {split} of {bench}")
