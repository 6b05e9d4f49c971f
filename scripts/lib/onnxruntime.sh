# Sourced by scripts/install-deps and scripts/package.
#
# ONNX Runtime's shared library comes from the pinned PyPI wheel `onnxruntime` (its
# onnxruntime/capi/libonnxruntime.so.* is the plain C API, usable from Rust).
ORT_VERSION=1.22.1

# `fetch_onnxruntime DIR [PLATFORM]` unpacks the wheel's library into DIR (once; DIR is
# left alone when it holds it already) and prints the library's path. PLATFORM is a
# wheel platform tag for another architecture (e.g. manylinux_2_27_aarch64); without
# it, the wheel for this machine.
fetch_onnxruntime() {
    local dir=$1 platform=${2:-}
    if ! ls "$dir"/libonnxruntime.so.* >/dev/null 2>&1; then
        echo "fetching ONNX Runtime $ORT_VERSION${platform:+ ($platform)} from PyPI" >&2
        local wheel_dir
        wheel_dir=$(mktemp -d)
        local args=()
        if [ -n "$platform" ]; then
            args=(--platform "$platform" --python-version 3.11 --implementation cp)
        fi
        python3 -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: "${args[@]}" --dest "$wheel_dir" "onnxruntime==$ORT_VERSION"
        rm -rf "$dir.partial"
        mkdir -p "$dir.partial"
        python3 - "$wheel_dir" "$dir.partial" <<'PY'
import glob, os, sys, zipfile
wheel = glob.glob(os.path.join(sys.argv[1], "onnxruntime-*.whl"))[0]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        base = os.path.basename(name)
        if name.startswith("onnxruntime/capi/") and base.startswith("libonnxruntime.so"):
            with open(os.path.join(sys.argv[2], base), "wb") as out:
                out.write(z.read(name))
PY
        rm -rf "$wheel_dir" "$dir"
        mv "$dir.partial" "$dir"
    fi
    ls "$dir"/libonnxruntime.so.* | head -n 1
}
