#!/bin/sh
# Run a test program under oclgrind twice and fail on anything it reports:
#  1. --data-races: out-of-bounds accesses and races, kernels built as usual;
#  2. --uninitialized with kernels built at -O0: oclgrind 21.10's uninitialized-value plugin
#     crashes on some optimised vector code (a bug in oclgrind, not in the kernel).
# oclgrind exits 0 even after reporting an error, so each run's --log must stay empty.
# Exit 77 (meson: skipped) when oclgrind is not installed.
set -u
command -v oclgrind >/dev/null 2>&1 || { echo "oclgrind not installed: skipped"; exit 77; }
# A sanitizer build (tests/sanitizers) checks the host code, which the `small` suite already ran
# there; oclgrind checks the kernels, in the normal build (and ASan refuses oclgrind's preload).
[ -z "${CLATTN_TEST_SANITIZED:-}" ] || { echo "sanitizer build: skipped"; exit 77; }
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
for flags in "--data-races" "--uninitialized --build-options -O0"; do
    : >"$log"
    # shellcheck disable=SC2086  # flags are two words on purpose
    CLATTN_CACHE_DIR=off oclgrind $flags --log "$log" "$@" --jobs 1
    rc=$?
    if [ "$rc" -ne 0 ] || [ -s "$log" ]; then
        echo "oclgrind $flags: exit $rc; its log:"
        cat "$log"
        status=1
    else
        echo "oclgrind $flags: no errors"
    fi
done
exit $status
