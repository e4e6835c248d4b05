/* The host-kernel contract (cl/launch.h): every kernel gets one parameter struct by value, and
   the device must see each member where the host put it. For each struct, the host fills every
   member with its own bit pattern and passes the struct to a kernel (compiled from launch.h by
   the device's compiler) that writes each member back; every member must come back intact.
   This checks the layout on the device and the driver's passing of struct arguments. It also
   runs under oclgrind (tests/oclgrind.sh). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "launch.h"

TestSuite(launch, .fini = test_ctx_release);

/* The members of each struct, with their sizes in bytes; padding included, so that the sizes
   add up to the struct's. */
#define VIEW(v, X) X(v.offset, 8) X(v.batch_stride, 8) X(v.head_stride, 8) X(v.seq_stride, 8)
#define DROPOUT(d, X) \
    X(d.seed_lo, 4) X(d.seed_hi, 4) X(d.offset_lo, 4) X(d.threshold, 4) X(d.q_start_lo, 4) \
    X(d.k_start_lo, 4) X(d.keep_scale, 4) X(d.pad_, 4)
#define ATTENTION(a, X)                                                                      \
    X(a.window_left, 8) X(a.window_right, 8) X(a.start_shift, 8) DROPOUT(a.dropout, X)      \
    X(a.seq_q, 4)                                                                            \
    X(a.seq_k, 4) X(a.head_dim, 4) X(a.head_dim_v, 4) X(a.heads_q, 4) X(a.group, 4)          \
    X(a.flags, 4) X(a.q_scale, 4) X(a.score_scale, 4) X(a.softcap, 4)
#define FORWARD(X)                                                                           \
    VIEW(q, X) VIEW(k, X) VIEW(v, X) VIEW(out, X) VIEW(lse, X) VIEW(bias, X) VIEW(sinks, X)  \
    X(out_split, 8) X(lse_split, 8) ATTENTION(attn, X) X(splits, 4) X(keys_per_split, 4)
#define BACKWARD(X)                                                                          \
    VIEW(q, X) VIEW(k, X) VIEW(v, X) VIEW(out, X) VIEW(dout, X) VIEW(lse, X) VIEW(dq, X)     \
    VIEW(dk, X) VIEW(dv, X) VIEW(bias, X) ATTENTION(attn, X) X(grad_mult, 4) X(pad_, 4)
#define MERGE(X)                                                                             \
    VIEW(parts, X) VIEW(part_lse, X) VIEW(out, X) VIEW(lse, X) X(part_stride, 8)             \
    X(lse_part_stride, 8) X(state_lse_at, 8) X(n_parts, 4) X(head_dim_v, 4) X(flags, 4)      \
    X(pad_, 4)
#define PACK(X)                                                                              \
    ATTENTION(attn, X) X(src_offset, 8) X(head_stride, 8) X(row_stride, 8) X(dst_offset, 8)  \
    X(flag_at, 8) X(batch, 8) X(rows, 4) X(dim, 4) X(masked, 4) X(key_first, 4) X(r0, 4)     \
    X(r1, 4) X(mult, 4) X(pad_, 4)
#define CHUNK(X)                                                                             \
    VIEW(v, X) VIEW(out, X) VIEW(lse, X) VIEW(bias, X) VIEW(sinks, X) ATTENTION(attn, X)     \
    X(batch, 8)                                                                              \
    X(scores_at, 8) X(sums_at, 8) X(values_at, 8) X(flag_at, 8) X(h0, 4) X(r0, 4)            \
    X(rows, 4) X(k0, 4) X(keys, 4) X(pad_, 4)

/* The bit pattern of member i: distinct in every byte, so that a shifted or partial read
   shows. */
static uint64_t pattern(int i, int size)
{
    const uint64_t x = 0x0123456789abcdefull ^ ((uint64_t)(i + 1) * 0x9e3779b97f4a7c15ull);
    return size == 8 ? x : x & 0xffffffffull;
}

static void set_member(void *member, int size, int i)
{
    const uint64_t x = pattern(i, size);
    if (size == 8) {
        memcpy(member, &x, 8);
    } else {
        const uint32_t y = (uint32_t)x;
        memcpy(member, &y, 4);
    }
}

/* A kernel `echo` that writes each member of `type`'s argument p as a 64-bit word, in order. */
static char *echo_source(const char *type, const char *const *names, const int *sizes, int n)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/cl/launch.h", CLATTN_SOURCE_DIR);
    FILE *f = fopen(path, "rb");
    cr_assert_not_null(f, "cannot open %s", path);
    const size_t cap = 1 << 20;
    char *src = malloc(cap);
    cr_assert_not_null(src);
    size_t len = fread(src, 1, cap / 2, f);
    fclose(f);
    len += (size_t)snprintf(src + len, cap - len,
                            "\n__kernel void echo(__global ulong *out, const %s p)\n{\n", type);
    for (int i = 0; i < n; i++)
        len += (size_t)snprintf(src + len, cap - len, sizes[i] == 8
                                    ? "    out[%d] = as_ulong(p.%s);\n"
                                    : "    out[%d] = (ulong)as_uint(p.%s);\n", i, names[i]);
    snprintf(src + len, cap - len, "}\n");
    return src;
}

/* Build echo for the struct, pass params to it, and expect every member back. */
static void check_struct(const char *type, const void *params, size_t size,
                         const char *const *names, const int *sizes, int n)
{
    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)sizes[i];
    cr_assert_eq(total, size, "%s: the members listed here add up to %zu bytes, the struct has "
                 "%zu: the list in tests/test_launch.c misses a member", type, total, size);
    char *src = echo_source(type, names, sizes, n);
    cl_int err = CL_SUCCESS;
    cl_device_id device;
    cr_assert_eq(clGetCommandQueueInfo(test_queue(), CL_QUEUE_DEVICE, sizeof device, &device,
                                       NULL), CL_SUCCESS);
    const char *text = src;
    cl_program program = clCreateProgramWithSource(test_cl_context(), 1, &text, NULL, &err);
    cr_assert_eq(err, CL_SUCCESS, "clCreateProgramWithSource: %d", err);
    err = clBuildProgram(program, 1, &device, "", NULL, NULL);
    if (err != CL_SUCCESS) {
        char log[4096] = "";
        clGetProgramBuildInfo(program, device, CL_PROGRAM_BUILD_LOG, sizeof log - 1, log, NULL);
        cr_assert_fail("%s: the device compiler rejects launch.h (%d): %s", type, err, log);
    }
    cl_kernel kernel = clCreateKernel(program, "echo", &err);
    cr_assert_eq(err, CL_SUCCESS);
    cl_mem out = buf_new(CL_MEM_READ_WRITE, (size_t)n * 8, NULL);
    cr_assert_eq(clSetKernelArg(kernel, 0, sizeof out, &out), CL_SUCCESS);
    cr_assert_eq(clSetKernelArg(kernel, 1, size, params), CL_SUCCESS,
                 "%s: the driver refuses a %zu-byte struct argument", type, size);
    const size_t one = 1;
    cr_assert_eq(clEnqueueNDRangeKernel(test_queue(), kernel, 1, NULL, &one, &one, 0, NULL, NULL),
                 CL_SUCCESS);
    uint64_t *got = malloc((size_t)n * 8);
    buf_read(out, (size_t)n * 8, got);
    for (int i = 0; i < n; i++)
        cr_expect_eq(got[i], pattern(i, sizes[i]), "%s.%s: the kernel read 0x%llx, the host "
                     "wrote 0x%llx", type, names[i], (unsigned long long)got[i],
                     (unsigned long long)pattern(i, sizes[i]));
    free(got);
    clReleaseMemObject(out);
    clReleaseKernel(kernel);
    clReleaseProgram(program);
    free(src);
}

#define NAME(member, size) #member,
#define SIZE(member, size) size,
#define FILL(member, size) set_member(&p.member, size, i++);
#define CHECK(type, LIST)                                                                    \
    do {                                                                                     \
        static const char *const names[] = {LIST(NAME)};                                     \
        static const int sizes[] = {LIST(SIZE)};                                             \
        type p;                                                                              \
        int i = 0;                                                                           \
        LIST(FILL)                                                                           \
        check_struct(#type, &p, sizeof p, names, sizes, i);                                  \
    } while (0)

Test(launch, every_member_reaches_the_kernel)
{
    CHECK(clattn_forward_params, FORWARD);
    CHECK(clattn_backward_params, BACKWARD);
    CHECK(clattn_merge_params, MERGE);
    CHECK(clattn_pack_params, PACK);
    CHECK(clattn_chunk_params, CHUNK);
}
