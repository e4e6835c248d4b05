/* A user tuning file changes what the library runs (and it still computes the right thing);
   a malformed file is skipped. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common.h"

static char db_path[64];

static void remove_db(void)
{
    test_ctx_release();
    if (db_path[0])
        unlink(db_path);
}

TestSuite(tuning, .fini = remove_db);

/* "platform name|device name|driver version" of the default test device. */
static void device_key(char *buf, size_t size)
{
    cl_device_id device;
    cl_platform_id platform;
    char pname[256], dname[256], driver[256];
    cr_assert_eq(clGetCommandQueueInfo(test_queue(), CL_QUEUE_DEVICE, sizeof device, &device, NULL), CL_SUCCESS);
    clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof pname, pname, NULL);
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof dname, dname, NULL);
    clGetDeviceInfo(device, CL_DRIVER_VERSION, sizeof driver, driver, NULL);
    snprintf(buf, size, "%s|%s|%s", pname, dname, driver);
}

/* Write the tuning file and point CLATTN_TUNING_DB at it; the next context reads it. */
static void write_db(const char *text)
{
    snprintf(db_path, sizeof db_path, "/tmp/clattn-tuning-%d.txt", (int)getpid());
    FILE *f = fopen(db_path, "w");
    cr_assert_not_null(f);
    fputs(text, f);
    fclose(f);
    setenv("CLATTN_TUNING_DB", db_path, 1);
    test_ctx_release();
}

/* Plan and run a causal f32 forward B=1 Hq=4 Hkv=2 Sq=Sk=77 D=Dv=16 checked against the
   reference; the plan line goes to plan. */
static void run_checked(char *plan, size_t size)
{
    static const int64_t qd[4] = {1, 4, 77, 16}, kd[4] = {1, 2, 77, 16};
    clattn_attention_desc desc;
    clattn_attention_desc_init(&desc);
    desc.causal = 1;
    test_forward_vs_reference(&desc, qd, kd, plan, size);
}

Test(tuning, a_user_entry_changes_the_tiling)
{
    char key[900], text[1200], plan[512];
    device_key(key, sizeof key);
    /* rows=4 wg=2 block_n=16 vec=8: a tiling no heuristic picks, valid on any OpenCL device */
    snprintf(text, sizeof text, "clattn-tuning 1\n# test entry\n%s\tforward\tf32\t16\t16\t1\tprefill\t4\t2\t16\t8\n", key);
    write_db(text);
    run_checked(plan, sizeof plan);
    cr_log_info("plan: %s", plan);
    cr_expect(strstr(plan, " tuned ") != NULL, "the tuned entry was not used: %s", plan);
    cr_expect(strstr(plan, "bn=16 rows=4 vec=8 wg=2") != NULL, "not the tuned tiling: %s", plan);
}

Test(tuning, a_malformed_file_leaves_the_heuristic)
{
    char plan[512];
    write_db("clattn-tuning 1\nthis line is not an entry\n");
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned ") == NULL, "%s", plan);
    write_db("no header\n");
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned ") == NULL, "%s", plan);
}
