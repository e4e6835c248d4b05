/* Which OpenBLAS kernel family the bench's CPU peer runs: the fastest one that passes a check.
   Debian's OpenBLAS 0.3.21 picks its slow generic Prescott kernels on CPUs it does not know,
   some with AVX-512 among them; OPENBLAS_CORETYPE=SkylakeX is ~3x faster there. OpenBLAS reads
   OPENBLAS_CORETYPE once, when it is loaded, so changing it means running the program again. */
#ifndef CLATTN_BENCH_OPENBLAS_CORE_H
#define CLATTN_BENCH_OPENBLAS_CORE_H

/* Call first in main, before anything else is printed or started. In order:
   - in the self-check child (CLATTN_BENCH_OPENBLAS_SELFTEST set): runs a small peer attention,
     compares it with the double loop and exits 0 (rel err < 1e-4) or 1;
   - after its own re-execution (CLATTN_BENCH_OPENBLAS_REEXEC set), or when OPENBLAS_CORETYPE is
     set, or OpenBLAS already runs an AVX-512 core, or the CPU has no avx512f: returns;
   - otherwise runs the self-check child with OPENBLAS_CORETYPE=SkylakeX, and if it passes,
     re-executes /proc/self/exe with the same argv, OPENBLAS_CORETYPE=SkylakeX and the guard
     variable set (this call does not return then).
   Returns how the running core was chosen, one static line for "openblas: core X (<line>)". */
const char *openblas_core_choose(char **argv);

#endif
