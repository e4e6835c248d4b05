/*
 * probe.cl — how many loop iterations a work-item may run on this device (src/check.c).
 *
 * Mesa's llvmpipe (rusticl) stops every loop of a kernel invocation once all of them together
 * have run 65535 iterations, and the kernel still completes: a long attention row then comes
 * out wrong with no error. One work-item steps a linear congruential generator `iterations`
 * times (a recurrence no compiler can sum in closed form, so the loop stays a loop) and writes
 * the last value; the host finds how many steps ran.
 *
 * Arguments: out (one uint), then clattn_loop_probe_params (launch.h). Launch: one work-item.
 */

__kernel void loop_probe(__global uint *out, const clattn_loop_probe_params params)
{
    uint x = 1u;
    for (int i = 0; i < params.iterations; i++)
        x = x * 1664525u + 1013904223u;
    out[0] = x;
}
