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

/* The default test device's platform name, device name, driver version and class. */
typedef struct device_names {
    char platform[256], name[256], driver[256];
    const char *class_name;
} device_names;

static device_names test_device(void)
{
    cl_device_id device;
    cl_platform_id platform;
    cl_device_type type = 0;
    device_names d;
    cr_assert_eq(clGetCommandQueueInfo(test_queue(), CL_QUEUE_DEVICE, sizeof device, &device, NULL), CL_SUCCESS);
    clGetDeviceInfo(device, CL_DEVICE_PLATFORM, sizeof platform, &platform, NULL);
    clGetPlatformInfo(platform, CL_PLATFORM_NAME, sizeof d.platform, d.platform, NULL);
    clGetDeviceInfo(device, CL_DEVICE_NAME, sizeof d.name, d.name, NULL);
    clGetDeviceInfo(device, CL_DRIVER_VERSION, sizeof d.driver, d.driver, NULL);
    clGetDeviceInfo(device, CL_DEVICE_TYPE, sizeof type, &type, NULL);
    d.class_name = (type & CL_DEVICE_TYPE_GPU) ? "[gpu]" : (type & CL_DEVICE_TYPE_CPU) ? "[cpu]"
                                                                                       : "[other]";
    return d;
}

/* "platform name|device name|driver version" of the default test device. */
static void device_key(char *buf, size_t size)
{
    const device_names d = test_device();
    snprintf(buf, size, "%s|%s|%s", d.platform, d.name, d.driver);
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
    cr_expect(strstr(plan, " tuned=exact ") != NULL, "the tuned entry was not used: %s", plan);
    cr_expect(strstr(plan, "bn=16 rows=4 vec=8 wg=2") != NULL, "not the tuned tiling: %s", plan);
}

/* A driver update keeps the device's tuning: an entry of another driver version, or of any
   ("*"), is taken when none names this one; and a class entry of the platform when no entry
   names the device at all. The exact entry, when there is one, wins over both. */
Test(tuning, entries_of_another_driver_and_of_the_class_are_found)
{
    const device_names d = test_device();
    char text[3000], plan[512];
    const char *rest = "\tforward\tf32\t16\t16\t1\tprefill";
    snprintf(text, sizeof text, "clattn-tuning 1\n%s|%s|0.0-another-driver%s\t4\t2\t16\t8\n",
             d.platform, d.name, rest);
    write_db(text);
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned=device ") && strstr(plan, "bn=16 rows=4 vec=8 wg=2"),
              "another driver's entry: %s", plan);

    snprintf(text, sizeof text, "clattn-tuning 1\n%s|%s|*%s\t2\t2\t8\t4\n", d.platform,
             d.class_name, rest);
    write_db(text);
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned=class ") && strstr(plan, "bn=8 rows=2 vec=4 wg=2"),
              "the class entry: %s", plan);

    snprintf(text, sizeof text, "clattn-tuning 1\n%s|%s|*%s\t2\t2\t8\t4\n%s|%s|*%s\t4\t1\t32\t4\n"
             "%s|%s|%s%s\t4\t2\t16\t8\n", d.platform, d.class_name, rest, d.platform, d.name,
             rest, d.platform, d.name, d.driver, rest);
    write_db(text);
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned=exact ") && strstr(plan, "bn=16 rows=4 vec=8 wg=2"),
              "the exact entry over the device's and the class's: %s", plan);
}

/* An entry that does not fit the device is ignored with a warning, and the next level runs:
   here a malformed tiling at the exact level, and at the device level one whose private
   arrays (tens of MiB a work-item) crashed PoCL's work-group function before the limit. */
Test(tuning, an_entry_that_does_not_fit_is_logged_and_skipped)
{
    const device_names d = test_device();
    char text[3000], plan[512];
    const char *rest = "\tforward\tf32\t16\t16\t1\tprefill";
    /* bn=12 is not a multiple of vec=8: never runs; the class entry below does */
    snprintf(text, sizeof text, "clattn-tuning 1\n%s|%s|%s%s\t4\t2\t12\t8\n"
             "%s|%s|*%s\t1024\t1\t4096\t16\n%s|%s|*%s\t2\t2\t8\t4\n",
             d.platform, d.name, d.driver, rest, d.platform, d.name, rest, d.platform,
             d.class_name, rest);
    write_db(text);
    test_log_start();
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned=class ") && strstr(plan, "bn=8 rows=2 vec=4 wg=2"),
              "the class entry after the one that does not fit: %s", plan);
    cr_expect(test_logged("\t4\t2\t12\t8\" does not fit"), "no warning for the bn=12 entry: %s",
              test_log);
    cr_expect(test_logged("\t1024\t1\t4096\t16\" does not fit") && test_logged("private"),
              "no warning naming private memory for the rows=1024 entry: %s", test_log);
    clattn_set_log_callback(NULL, NULL);
}

Test(tuning, a_malformed_file_leaves_the_heuristic)
{
    char plan[512];
    write_db("clattn-tuning 1\nthis line is not an entry\n");
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned") == NULL, "%s", plan);
    write_db("no header\n");
    run_checked(plan, sizeof plan);
    cr_expect(strstr(plan, " tuned") == NULL, "%s", plan);
}
