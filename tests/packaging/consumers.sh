#!/usr/bin/env bash
# meson install into a temporary DESTDIR, then build examples/three_tokens.c against that install
# twice, as users outside the tree do: with CMake's find_package(clattn) (tests/packaging/
# CMakeLists.txt) and with pkg-config. Both programs must run and print the f64 reference's
# values. Also checks that clattn-bench and its man page are installed when it is built.
# Usage: consumers.sh BUILD_DIR SOURCE_DIR PREFIX LIBDIR VERSION BENCH(0|1)
# Exit 77 (skipped) without cmake, or without an OpenCL device to run on.
set -euo pipefail
build=$1 src=$(cd "$2" && pwd) prefix=$3 libdir=$4 version=$5 bench=$6
command -v cmake > /dev/null || { echo "cmake is not installed: skipped"; exit 77; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
dest=$work/dest
root=$dest$prefix
meson install -C "$build" --destdir "$dest" --no-rebuild --quiet

for f in "include/clattn.h" "$libdir/pkgconfig/clattn.pc" "$libdir/cmake/clattn/clattnConfig.cmake"
do
    [ -f "$root/$f" ] || { echo "not installed: $prefix/$f"; exit 1; }
done
if [ "$bench" = 1 ]; then
    for f in bin/clattn-bench share/man/man1/clattn-bench.1; do
        [ -f "$root/$f" ] || { echo "not installed: $prefix/$f"; exit 1; }
    done
fi

# Token i of three_tokens.c, in f64: causal softmax of q.k/sqrt(2), then out and lse.
python3 - > "$work/expected" <<'PY'
import math
q = k = [(1, 0), (0, 1), (1, 1)]
v = [(1, 2), (3, 4), (5, 6)]
for i in range(3):
    s = [sum(a * b for a, b in zip(q[i], k[j])) / math.sqrt(2) for j in range(i + 1)]
    m = max(s)
    w = [math.exp(x - m) for x in s]
    out = [sum(w[j] * v[j][c] for j in range(i + 1)) / sum(w) for c in range(2)]
    print(f"token {i}: out = ({out[0]:.4f}, {out[1]:.4f})  lse = {m + math.log(sum(w)):.4f}")
PY

# Runs one consumer; 77 when there is no device to run on.
check_run() {
    local name=$1
    shift
    if ! "$@" > "$work/$name.out" 2> "$work/$name.err"; then
        if grep -q DEVICE_NOT_FOUND "$work/$name.err"; then
            echo "no OpenCL device: skipped"
            exit 77
        fi
        cat "$work/$name.err"
        echo "$name: the consumer failed"
        exit 1
    fi
    grep '^token' "$work/$name.out" | diff "$work/expected" - ||
        { echo "$name: output differs from the f64 reference"; exit 1; }
    echo "$name: built against the install, ran, matched the f64 reference"
}

cmake -S "$src/tests/packaging" -B "$work/cmake" -DCMAKE_PREFIX_PATH="$root" \
    -DCLATTN_WANTED_VERSION="$version" -DCLATTN_EXAMPLE="$src/examples/three_tokens.c" \
    > "$work/cmake.log" || { cat "$work/cmake.log"; exit 1; }
cmake --build "$work/cmake" > "$work/cmake-build.log" || { cat "$work/cmake-build.log"; exit 1; }
check_run cmake "$work/cmake/three_tokens"

export PKG_CONFIG_PATH=$root/$libdir/pkgconfig
flags=$(pkg-config --define-variable=prefix="$root" --cflags --libs clattn)
# shellcheck disable=SC2086  # the flags are words
cc "$src/examples/three_tokens.c" -o "$work/pc_three_tokens" $flags
LD_LIBRARY_PATH=$root/$libdir check_run pkg-config "$work/pc_three_tokens"
