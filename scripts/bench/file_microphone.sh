# Sourced by the live benches: `file_microphone DIR` makes DIR/mic.fifo and
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
