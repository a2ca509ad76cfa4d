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
