#!/usr/bin/env bash
# Builds and runs the C tests of the C API under valgrind, plus the quickstart example and a
# short run of the recommend benchmark. Needs gcc, valgrind and the debug library
# (`cargo build --lib`). Prints "N passed, M failed" (N counts test programs) and exits
# non-zero on any failure.
#
#   bindings/c/run-tests.sh            # against target/debug
#   CONVERGEDB_LIB_DIR=target/release bindings/c/run-tests.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
LIB_DIR="$(cd "$ROOT/${CONVERGEDB_LIB_DIR:-target/debug}" && pwd)"
BUILD="$ROOT/target/c-tests"
C="$ROOT/bindings/c"
CFLAGS=(-std=c11 -Wall -Wextra -Werror -pedantic -g -I"$C/include")
SHARED=(-L"$LIB_DIR" -lconvergedb -Wl,-rpath,"$LIB_DIR" -lpthread -lm)
STATIC=("$LIB_DIR/libconvergedb.a" -lpthread -ldl -lm)
# No suppression file: the libraries' process-global state (sled's thread pool, the Rust
# runtime) shows up only as "still reachable" or "possibly lost" (thread stacks of sled's
# background threads), which --errors-for-leak-kinds=definite,indirect does not count.
VALGRIND=(valgrind --quiet --error-exitcode=1 --leak-check=full
  --errors-for-leak-kinds=definite,indirect)

for f in libconvergedb.so libconvergedb.a; do
  [ -f "$LIB_DIR/$f" ] || { echo "error: $LIB_DIR/$f is missing: run cargo build --lib" >&2; exit 1; }
done
command -v gcc >/dev/null || { echo "error: gcc is required" >&2; exit 1; }
command -v valgrind >/dev/null || { echo "error: valgrind is required" >&2; exit 1; }
mkdir -p "$BUILD"

passed=0
failed=0
run() { # name, command...
  local name="$1"
  shift
  echo "--- $name"
  if "$@" >"$BUILD/$name.log" 2>&1; then
    passed=$((passed + 1))
    grep -v "^==" "$BUILD/$name.log" | tail -n 1
  else
    failed=$((failed + 1))
    cat "$BUILD/$name.log"
    echo "FAILED: $name"
  fi
}

build() { # output, source, link flags...
  local out="$1" src="$2"
  shift 2
  gcc "${CFLAGS[@]}" "$src" -o "$BUILD/$out" "$@"
}

build test_api "$C/tests/test_api.c" "${SHARED[@]}"
build test_api_static "$C/tests/test_api.c" "${STATIC[@]}"
build test_errors "$C/tests/test_errors.c" "${SHARED[@]}"
build test_threads "$C/tests/test_threads.c" "${SHARED[@]}"
build test_edges "$C/tests/test_edges.c" "${SHARED[@]}"
build quickstart "$C/examples/quickstart.c" "${SHARED[@]}"
gcc -O2 "${CFLAGS[@]}" "$C/bench/recommend_bench.c" -o "$BUILD/recommend_bench" "${SHARED[@]}"

run test_api "${VALGRIND[@]}" "$BUILD/test_api"
run test_api_static "${VALGRIND[@]}" "$BUILD/test_api_static"
run test_errors "${VALGRIND[@]}" "$BUILD/test_errors"
run test_threads "${VALGRIND[@]}" "$BUILD/test_threads"
run test_edges "${VALGRIND[@]}" "$BUILD/test_edges"
run quickstart "${VALGRIND[@]}" "$BUILD/quickstart"
# A smoke run of the benchmark (small and without valgrind; figures: bindings/README.md).
run recommend_bench "$BUILD/recommend_bench" 2000 1000 50 20000

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
