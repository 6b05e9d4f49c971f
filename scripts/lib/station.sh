# Sourced by the live benches and the demo (run from the repository root).
#
# `file_microphone DIR` makes DIR/mic.fifo and
# DIR/asound.conf, whose default capture device is ALSA's file plugin reading raw samples
# from the FIFO (fed by agent/examples/paced_fifo.rs); run the agent with
# ALSA_CONFIG_PATH=DIR/asound.conf.
file_microphone() {
    mkfifo "$1/mic.fifo"
    cat > "$1/asound.conf" <<CONF
pcm.!default {
 type file
 slave.pcm { type null }
 file "/dev/null"
 infile "$1/mic.fifo"
 format "raw"
}
CONF
}

# `bench_station FILE DATA_DIR ENGINE [TOML]` writes a station file: station
# ${STATION_ID:-bench} on the demo model at 32 kHz, its data in DATA_DIR, ENGINE with 1
# thread, and the sections in TOML (e.g. `[detection]`, `[mqtt]`) added.
bench_station() {
    cat > "$1" <<TOML
[station]
id = "${STATION_ID:-bench}"

[audio]
sample_rate_hz = 32000

[model]
bundle = "$PWD/models/demo/warble-demo-0.1.0.warble"
trusted_keys = ["$PWD/models/demo/warble-demo.pub"]

[storage]
data_dir = "$2"

[runtime]
engine = "$3"
threads = 1
${4:-}
TOML
}
