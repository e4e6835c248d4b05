/* clattn-bench --list-devices: every OpenCL device, what clattn's probe sees in it, and the
   --device selector that picks it. */
#ifndef CLATTN_BENCH_DEVICES_H
#define CLATTN_BENCH_DEVICES_H

/* Prints the list to stdout. Returns the exit status: 0, or 1 when OpenCL has no platform or a
   query fails (the reason on stderr). */
int print_devices(void);

#endif
