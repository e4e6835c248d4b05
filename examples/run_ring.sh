#!/usr/bin/env bash
# Runs an MPI program for the `mpi` test suite (examples/meson.build):
#   run_ring.sh MPIRUN NP [--expect-status N] PROGRAM ARGS...
# With --expect-status N the run passes only if mpirun exits N (a usage error must be that
# error, not any failure); otherwise mpirun's status is the test's (77: skipped, no device).
set -u
mpirun=$1 np=$2
shift 2
expect=
if [ "${1-}" = --expect-status ]; then
    expect=$2
    shift 2
fi
# More ranks than cores (2 here); mpirun refuses to start as root unless told it is meant (CI
# runs as root).
flags=(--oversubscribe)
[ "$(id -u)" -ne 0 ] || flags+=(--allow-run-as-root)
# Open MPI's shared-memory transport copies large messages with CMA (process_vm_readv), which
# needs ptrace permission that containers often deny; plain copies work everywhere.
export OMPI_MCA_btl_vader_single_copy_mechanism=none
# In a sanitizer build (tests/sanitizers) LeakSanitizer would fail every run on Open MPI's own
# allocations: about 3350 blocks (120 kB) per rank from MPI_Init that it never frees, in
# components it unloads before exit, so LSan names their frames wrongly (as the example's or
# libclattn's, at offsets past the end of their code) and no suppression could match them
# without hiding clattn's. Leak checks are off for these processes; ASan and UBSan stay on.
if [ -n "${ASAN_OPTIONS-}" ]; then
    export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
fi
"$mpirun" "${flags[@]}" -np "$np" "$@"
rc=$?
if [ -n "$expect" ]; then
    [ "$rc" -eq "$expect" ] && exit 0
    echo "run_ring.sh: expected exit status $expect, got $rc" >&2
    exit 1
fi
exit "$rc"
