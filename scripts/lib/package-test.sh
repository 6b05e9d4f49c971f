#!/usr/bin/env bash
# The install test of `scripts/package amd64 --test`, run as root on a machine where
# Warble is not installed (it refuses otherwise, as it removes what it installs):
#
#  1. dpkg -i of both packages: files, conffiles and system users in place, the three
#     units pass `systemd-analyze verify`, the example station validates;
#  2. a station folder rendered from firmware-config/examples/fleet (pointed at a local
#     broker) installs with its install.sh; a mosquitto started from exactly the rendered
#     broker files carries its detections to the packaged collector;
#  3. the agent runs as the `warble` user, from the unit's ExecStart, in a reset
#     environment (no ORT_DYLIB_PATH: it must find the packaged ONNX Runtime), hearing
#     the demo recording through a file-backed ALSA device (/etc/asound.conf, restored
#     after), and every detection it made is in the collector's store;
#  4. dpkg -r keeps the station's files and data, dpkg --purge leaves nothing.
#
# Usage: package-test.sh DIST PACED_FIFO (the folder of the .debs, and the microphone
# stand-in agent/examples/paced_fifo.rs built by scripts/package).
set -euo pipefail
cd "$(dirname "$0")/../.."
dist=$1 paced_fifo=$2

step() { echo "package test: $*"; }
fail() {
    echo "package test: FAILED: $*" >&2
    exit 1
}
[ "$(id -u)" -eq 0 ] || fail "run as root"
for pkg in warble-agent warble-collect; do
    if dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "installed"; then
        fail "$pkg is installed on this machine already: the test would remove it"
    fi
done
agent_deb=$(ls "$dist"/warble-agent_*_amd64.deb | tail -n 1)
collect_deb=$(ls "$dist"/warble-collect_*_amd64.deb | tail -n 1)

work=$(mktemp -d)
chmod 0755 "$work"
pids=()
asound_backup=
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    dpkg --purge warble-agent warble-collect >/dev/null 2>&1 || true
    rm -f /etc/asound.conf
    if [ -n "$asound_backup" ]; then mv "$asound_backup" /etc/asound.conf; fi
    rm -rf "$work"
}
trap cleanup EXIT
if [ -e /etc/asound.conf ]; then
    asound_backup="$work/asound.conf.backup"
    cp -a /etc/asound.conf "$asound_backup"
fi
mode_of() { stat -c '%a %U:%G' "$1"; }
expect_mode() {
    [ "$(mode_of "$1")" = "$2" ] || fail "$1 is $(mode_of "$1"), expected $2"
}

step "1. dpkg -i $(basename "$agent_deb") $(basename "$collect_deb")"
dpkg -i "$agent_deb" "$collect_deb" >"$work/dpkg.log" 2>&1 || { cat "$work/dpkg.log" >&2; fail "dpkg -i"; }
for f in /usr/bin/warble-agent /usr/bin/warble-config /usr/bin/warble-collect \
    /usr/lib/warble/libonnxruntime.so /usr/lib/systemd/system/warble-agent.service \
    /usr/lib/systemd/system/warble-collect.service /usr/lib/systemd/system/warble-collect-dashboard.service \
    /etc/warble/station.toml /etc/warble-collect/collect.env \
    /usr/share/warble/demo/warble-demo-0.1.0.warble /usr/share/warble/demo/warble-demo.pub \
    /usr/share/doc/warble-agent/install.md; do
    [ -e "$f" ] || fail "$f is not installed"
done
for conffile in /etc/warble/station.toml; do
    dpkg-query -W -f='${Conffiles}\n' warble-agent | grep -q " $conffile " \
        || fail "$conffile is not a conffile of warble-agent"
done
dpkg-query -W -f='${Conffiles}\n' warble-collect | grep -q " /etc/warble-collect/collect.env " \
    || fail "collect.env is not a conffile of warble-collect"
getent passwd warble >/dev/null || fail "no warble user"
id -nG warble | tr ' ' '\n' | grep -qx audio || fail "warble is not in the audio group"
getent passwd warble-collect >/dev/null || fail "no warble-collect user"
cmp -s agent/debian/warble-agent.service /usr/lib/systemd/system/warble-agent.service \
    || fail "the installed unit is not agent/debian/warble-agent.service"
systemd-analyze verify /usr/lib/systemd/system/warble-agent.service \
    /usr/lib/systemd/system/warble-collect.service /usr/lib/systemd/system/warble-collect-dashboard.service \
    >"$work/verify.log" 2>&1 || { cat "$work/verify.log" >&2; fail "systemd-analyze verify"; }
warble-config validate /etc/warble/station.toml >/dev/null || fail "the example station does not validate"

step "2. a station folder rendered from the example fleet, and its broker"
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cp -r firmware-config/examples/fleet "$work/fleet"
python3 - "$work" "$port" "$PWD" <<'PY'
import sys
work, port, repo = sys.argv[1:]
path = f"{work}/fleet/fleet.toml"
text = open(path).read()
text = text.replace("../../../models", f"{repo}/models")
text = text.replace('broker = "mqtts://broker.example.org"', f'broker = "mqtt://127.0.0.1:{port}"')
text = text.replace('dir = "/etc/mosquitto/warble"',
    f'dir = "{work}/out/broker"\npersistence_dir = "{work}/mosquitto"\nbind = "127.0.0.1"')
# The demo recording is at 32 kHz; engine "ort" refuses to fall back to tract, so the
# agent must find the packaged ONNX Runtime.
text += '\n[defaults.audio]\nsample_rate_hz = 32000\n\n[defaults.runtime]\nengine = "ort"\nthreads = 1\n'
open(path, "w").write(text)
open(f"{work}/fleet/stations.csv", "w").write(
    "id,group,latitude,longitude,name\ntegel-marsh-01,wetland,52.5871,13.2611,Tegeler Fliess\n")
PY
warble-config render "$work/fleet/fleet.toml" --stations "$work/fleet/stations.csv" \
    --out "$work/out" >/dev/null || fail "render"
station="$work/out/tegel-marsh-01"
install -d -o mosquitto -g mosquitto "$work/mosquitto"
chgrp mosquitto "$work/out/broker/passwd"
chmod 0640 "$work/out/broker/passwd"
mosquitto -c "$work/out/broker/warble.conf" >"$work/mosquitto.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
    if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1', int(sys.argv[1])), 0.2)" "$port" 2>/dev/null; then break; fi
    sleep 0.1
done
kill -0 "${pids[-1]}" 2>/dev/null || { cat "$work/mosquitto.log" >&2; fail "mosquitto did not start on the rendered files"; }
# Only the rendered passwords get in.
if mosquitto_sub -h 127.0.0.1 -p "$port" -u collector -P wrong -t '#' -C 1 -W 2 >/dev/null 2>&1; then
    fail "the broker let a wrong password in"
fi
chmod 0644 "$work/fleet/secrets/collector.credentials"
install -d -o warble-collect -g warble-collect "$work/collect"
setpriv --reuid=warble-collect --regid=warble-collect --init-groups --reset-env -- \
    /usr/bin/warble-collect run --broker "mqtt://127.0.0.1:$port" \
    --credentials-file "$work/fleet/secrets/collector.credentials" \
    --db "$work/collect/fleet.sqlite" >"$work/collector.log" 2>&1 &
pids+=($!)

step "   install.sh (installs the package again from the .deb)"
sh "$station/install.sh" "$agent_deb" >"$work/install.log" 2>&1 \
    || { cat "$work/install.log" >&2; fail "install.sh"; }
expect_mode /etc/warble/station.toml "640 root:warble"
expect_mode /etc/warble/credentials "640 root:warble"
expect_mode /var/lib/warble/models/active.warble "640 warble:warble"
expect_mode /var/lib/warble "750 warble:warble"
cmp -s "$station/station.toml" /etc/warble/station.toml || fail "install.sh did not place station.toml"
[ -f /etc/systemd/system/warble-agent.service.d/station.conf ] || fail "no drop-in"
# A damaged folder is refused before anything is placed.
cp -r "$station" "$work/damaged"
echo "# changed" >>"$work/damaged/station.toml"
if sh "$work/damaged/install.sh" >"$work/damaged.log" 2>&1; then
    fail "install.sh placed a folder whose files do not match their sums"
fi

step "3. the agent as the warble user, from the unit's ExecStart"
exec_start=$(cat /usr/lib/systemd/system/warble-agent.service /etc/systemd/system/warble-agent.service.d/*.conf \
    | sed -n 's/^ExecStart=//p' | grep -v '^$' | tail -n 1)
[ "$exec_start" = "/usr/bin/warble-agent run --config /etc/warble/station.toml" ] \
    || fail "unexpected ExecStart: $exec_start"
. scripts/lib/station.sh
file_microphone "$work"
chmod 0666 "$work/mic.fifo"
# System-wide, so that the agent runs in the unit's environment (no ALSA_CONFIG_PATH).
cp "$work/asound.conf" /etc/asound.conf
"$paced_fifo" demo/soundscape.flac "$work/mic.fifo" 32000 120 --once --speed 4 \
    2>"$work/fifo.log" &
pids+=($!)
# shellcheck disable=SC2086 # the unit's command line, split as systemd splits it
(cd / && setpriv --reuid=warble --regid=warble --init-groups --reset-env -- \
    $exec_start --duration 25) >"$work/agent.out" 2>"$work/agent.log" \
    || { cat "$work/agent.log" >&2; fail "the agent failed"; }
made=$(cat /var/lib/warble/detections/*.jsonl 2>/dev/null | wc -l)
[ "$made" -gt 0 ] || { cat "$work/agent.log" >&2; fail "the station made no detections"; }
stored=0
for _ in $(seq 100); do
    stored=$(python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(\"select count(*) from events where station = 'tegel-marsh-01'\").fetchone()[0])" \
        "$work/collect/fleet.sqlite" 2>/dev/null || echo 0)
    [ "$stored" -ge "$made" ] && break
    sleep 0.2
done
[ "$stored" -eq "$made" ] || { cat "$work/collector.log" >&2; fail "the station made $made detections, the collector stored $stored"; }
step "   $made detections made as the warble user on ONNX Runtime, $stored stored through the rendered broker"

step "4. dpkg -r keeps the station's files and data; --purge leaves nothing"
dpkg -r warble-agent warble-collect >>"$work/dpkg.log" 2>&1 || fail "dpkg -r"
for gone in /usr/bin/warble-agent /usr/bin/warble-collect /usr/lib/warble/libonnxruntime.so \
    /usr/lib/systemd/system/warble-agent.service; do
    [ ! -e "$gone" ] || fail "$gone is left after dpkg -r"
done
for kept in /etc/warble/station.toml /etc/warble/credentials /var/lib/warble/models/active.warble \
    /etc/warble-collect/collect.env; do
    [ -e "$kept" ] || fail "dpkg -r removed $kept"
done
[ "$(cat /var/lib/warble/detections/*.jsonl | wc -l)" -eq "$made" ] || fail "dpkg -r lost detections"
dpkg --purge warble-agent warble-collect >>"$work/dpkg.log" 2>&1 || fail "dpkg --purge"
for gone in /etc/warble /var/lib/warble /etc/systemd/system/warble-agent.service.d \
    /etc/warble-collect /var/lib/warble-collect /usr/lib/warble /usr/share/warble \
    /usr/share/doc/warble-agent /usr/lib/sysusers.d/warble-agent.conf; do
    [ ! -e "$gone" ] || fail "$gone is left after dpkg --purge"
done
step "passed"
