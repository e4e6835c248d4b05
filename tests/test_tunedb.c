/* The tuning database as pure code: parsing, formatting, overlays, lookup, and the planner
   taking a tuned tiling only when it fits the device. No device needed. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "embedded.h"
#include "tunedb.h"

#define PLATFORM "Some Platform"
#define KEY PLATFORM "|Some GPU|1.2.3"

static const clattn_tune_device this_device = {PLATFORM, "Some GPU", "1.2.3"};

static const char *const good_line =
    KEY "\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4";

Test(tunedb, parses_every_field)
{
    clattn_tune_entry e;
    cr_assert_eq(clattn_tunedb_parse_line(good_line, &e), 1);
    cr_expect_str_eq(e.key.device.platform, PLATFORM);
    cr_expect_str_eq(e.key.device.name, "Some GPU");
    cr_expect_str_eq(e.key.device.driver, "1.2.3");
    cr_expect_eq(e.key.dtype, CLATTN_F16);
    cr_expect_eq(e.key.head_dim, 128);
    cr_expect_eq(e.key.head_dim_v, 64);
    cr_expect_eq(e.key.causal, 1);
    cr_expect_eq(e.key.decode, 1);
    cr_expect(e.rows == 2 && e.wg == 64 && e.block_n == 16 && e.vec == 4);
}

Test(tunedb, format_round_trips)
{
    clattn_tune_entry e, back;
    cr_assert_eq(clattn_tunedb_parse_line(good_line, &e), 1);
    char buf[1024];
    size_t n = clattn_tunedb_format(&e, buf, sizeof buf);
    cr_expect_eq(n, strlen(buf));
    cr_expect_str_eq(buf, good_line);
    cr_assert_eq(clattn_tunedb_parse_line(buf, &back), 1);
    cr_expect_eq(memcmp(&e, &back, sizeof e), 0);
}

Test(tunedb, blank_and_comment_lines_are_not_entries)
{
    clattn_tune_entry e;
    cr_expect_eq(clattn_tunedb_parse_line("", &e), 0);
    cr_expect_eq(clattn_tunedb_parse_line("\n", &e), 0);
    cr_expect_eq(clattn_tunedb_parse_line("# a comment\tforward", &e), 0);
}

Test(tunedb, malformed_lines_are_rejected)
{
    static const char *const bad[] = {
        KEY "\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16",            /* a field short */
        KEY "\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4\t9",      /* a field more */
        KEY "\tbackward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4",        /* unknown kernel */
        KEY "\tforward\tf64\t128\t64\t1\tdecode\t2\t64\t16\t4",         /* unknown dtype */
        KEY "\tforward\tf16\tx\t64\t1\tdecode\t2\t64\t16\t4",           /* not a number */
        KEY "\tforward\tf16\t0\t64\t1\tdecode\t2\t64\t16\t4",           /* head dim 0 */
        KEY "\tforward\tf16\t128\t64\t2\tdecode\t2\t64\t16\t4",         /* causal 2 */
        KEY "\tforward\tf16\t128\t64\t1\tmiddle\t2\t64\t16\t4",         /* sq class */
        KEY "\tforward\tf16\t128\t64\t1\tdecode\t-2\t64\t16\t4",        /* negative rows */
        KEY "\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t99",        /* vec 99 */
        "\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4",             /* empty device */
        "P|D\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4",          /* no driver */
        "|D|1\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4",         /* no platform */
        "P||1\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4",         /* no device */
        "one field only",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        clattn_tune_entry e;
        cr_expect_eq(clattn_tunedb_parse_line(bad[i], &e), -1, "accepted: \"%s\"", bad[i]);
    }
}

Test(tunedb, text_needs_the_header_and_counts_bad_lines)
{
    clattn_tunedb db = {0};
    cr_expect_eq(clattn_tunedb_add_text(&db, "not the header\n", 15, "test"), -1);
    cr_expect_eq(db.count, 0);
    char text[2048];
    snprintf(text, sizeof text, "%s\n%s\ngarbage line\n# comment\n\n%s\n", CLATTN_TUNEDB_HEADER,
             good_line, KEY "\tforward\tf32\t64\t64\t0\tprefill\t8\t1\t32\t16");
    cr_expect_eq(clattn_tunedb_add_text(&db, text, strlen(text), "test"), 1);
    cr_expect_eq(db.count, 2);
    clattn_tunedb_free(&db);
}

Test(tunedb, the_built_in_table_loads_whole)
{
    const clattn_embedded_file *builtin = &clattn_embedded_tuning[0];
    cr_assert_str_eq(builtin->name, "builtin_tuning.txt");
    clattn_tunedb db = {0};
    cr_expect_eq(clattn_tunedb_add_text(&db, builtin->text, builtin->length, "test"), 0,
                 "builtin_tuning.txt has malformed lines or no header");
    cr_expect_gt(db.count, 0);
    clattn_tunedb_free(&db);
}

/* The entry find returns for the f16 d=128 dv=64 causal decode class on this_device. */
static const clattn_tune_entry *find(const clattn_tunedb *db, clattn_problem p,
                                     clattn_tiling_source level)
{
    const clattn_tune_key key = clattn_tune_key_of(&this_device, &p);
    return clattn_tunedb_find(db, &key, CLATTN_DEVICE_CLASS_GPU, level);
}

static const clattn_problem decode_problem = {CLATTN_F16, 1, 8, 8, 1, 4096, 128, 64, 1};

Test(tunedb, later_entries_for_a_key_win_and_find_matches_the_class)
{
    clattn_tunedb db = {0};
    char text[2048];
    snprintf(text, sizeof text, "%s\n%s\n%s\n", CLATTN_TUNEDB_HEADER, good_line,
             KEY "\tforward\tf16\t128\t64\t1\tdecode\t4\t32\t8\t8");
    cr_assert_eq(clattn_tunedb_add_text(&db, text, strlen(text), "test"), 0);
    clattn_problem p = decode_problem;
    const clattn_tune_entry *e = find(&db, p, CLATTN_TILING_TUNED_EXACT);
    cr_assert_not_null(e);
    cr_expect(e->rows == 4 && e->wg == 32 && e->block_n == 8 && e->vec == 8);
    p.causal = 0;
    cr_expect_null(find(&db, p, CLATTN_TILING_TUNED_EXACT), "causal differs: no entry");
    p.causal = 1;
    p.seq_q = 1024;
    cr_expect_null(find(&db, p, CLATTN_TILING_TUNED_EXACT), "prefill differs from decode");
    clattn_tunedb_free(&db);
}

Test(tunedb, lookup_falls_back_from_the_driver_to_the_device_class)
{
    clattn_tunedb db = {0};
    char text[2048];
    /* another driver of this device, a "*" entry for it, a class entry of its platform, and
       entries of another platform and device that must never match */
    snprintf(text, sizeof text, "%s\n%s\n%s\n%s\n%s\n%s\n", CLATTN_TUNEDB_HEADER,
             PLATFORM "|Some GPU|1.0.0\tforward\tf16\t128\t64\t1\tdecode\t1\t64\t8\t4",
             PLATFORM "|Some GPU|*\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t8\t4",
             PLATFORM "|[gpu]|*\tforward\tf16\t128\t64\t1\tdecode\t4\t64\t8\t4",
             "Other Platform|[gpu]|*\tforward\tf16\t128\t64\t1\tdecode\t8\t64\t8\t4",
             PLATFORM "|Other GPU|1.2.3\tforward\tf16\t128\t64\t1\tdecode\t16\t64\t8\t4");
    cr_assert_eq(clattn_tunedb_add_text(&db, text, strlen(text), "test"), 0);
    cr_expect_null(find(&db, decode_problem, CLATTN_TILING_TUNED_EXACT),
                   "no entry has this driver");
    const clattn_tune_entry *e = find(&db, decode_problem, CLATTN_TILING_TUNED_DEVICE);
    cr_assert_not_null(e);
    cr_expect_eq(e->rows, 2, "the device level takes the entry loaded last (the \"*\" one)");
    e = find(&db, decode_problem, CLATTN_TILING_TUNED_CLASS);
    cr_assert_not_null(e);
    cr_expect_eq(e->rows, 4, "the class entry of this platform, not of another");
    const clattn_tune_key key = clattn_tune_key_of(&this_device, &decode_problem);
    cr_expect_null(clattn_tunedb_find(&db, &key, CLATTN_DEVICE_CLASS_CPU,
                                      CLATTN_TILING_TUNED_CLASS), "a CPU is not in [gpu]");
    /* the exact entry, added by a later file, wins over everything */
    snprintf(text, sizeof text, "%s\n%s\n", CLATTN_TUNEDB_HEADER, good_line);
    cr_assert_eq(clattn_tunedb_add_text(&db, text, strlen(text), "test"), 0);
    e = find(&db, decode_problem, CLATTN_TILING_TUNED_EXACT);
    cr_assert_not_null(e);
    cr_expect_eq(e->rows, 2);
    cr_expect_eq(e->wg, 64);
    clattn_tunedb_free(&db);
}

static clattn_device_probe small_gpu(void)
{
    clattn_device_probe p;
    memset(&p, 0, sizeof p);
    p.device_class = CLATTN_DEVICE_CLASS_GPU;
    p.compute_units = 8;
    p.max_work_group_size = 256;
    p.max_work_item_size0 = 256;
    p.local_mem_size = 32768;
    p.local_mem_dedicated = 1;
    p.preferred_vector_width_float = 4;
    p.work_group_multiple = 32;
    return p;
}

Test(tunedb, planner_takes_a_tuned_tiling_only_when_it_fits)
{
    const clattn_device_probe probe = small_gpu();
    clattn_problem p = {CLATTN_F32, 1, 8, 8, 1024, 1024, 64, 64, 0};
    clattn_tune_entry e;
    cr_assert_eq(clattn_tunedb_parse_line(KEY "\tforward\tf32\t64\t64\t0\tprefill\t2\t32\t16\t4",
                                          &e), 1);
    clattn_tiling tuned = clattn_tunedb_tiling(&e, &p);
    clattn_plan plan;
    char why[256];
    cr_assert_eq(clattn_plan_call(&probe, &p, CLATTN_ALGO_AUTO, &tuned, CLATTN_TILING_TUNED_EXACT,
                                  &plan, why, sizeof why), CLATTN_SUCCESS);
    cr_expect(plan.source == CLATTN_TILING_TUNED_EXACT && plan.tiling.rows == 2 &&
              plan.tiling.wg == 32 && plan.tiling.block_m == 64 && plan.tiling.block_n == 16);

    /* too much local memory for this device: the heuristic's tiling runs instead */
    cr_assert_eq(clattn_tunedb_parse_line(KEY "\tforward\tf32\t64\t64\t0\tprefill\t1\t64\t256\t4",
                                          &e), 1);
    tuned = clattn_tunedb_tiling(&e, &p);
    cr_assert_eq(clattn_plan_call(&probe, &p, CLATTN_ALGO_AUTO, &tuned, CLATTN_TILING_TUNED_EXACT,
                                  &plan, why, sizeof why), CLATTN_SUCCESS);
    cr_expect_eq(plan.source, CLATTN_TILING_HEURISTIC);
    cr_expect(clattn_tiling_fits(&probe, &plan.tiling, NULL, 0));

    /* a work-group over the device's limit: ignored too */
    cr_assert_eq(clattn_tunedb_parse_line(KEY "\tforward\tf32\t64\t64\t0\tprefill\t1\t1024\t16\t4",
                                          &e), 1);
    tuned = clattn_tunedb_tiling(&e, &p);
    cr_assert_eq(clattn_plan_call(&probe, &p, CLATTN_ALGO_AUTO, &tuned, CLATTN_TILING_TUNED_EXACT,
                                  &plan, why, sizeof why), CLATTN_SUCCESS);
    cr_expect_eq(plan.source, CLATTN_TILING_HEURISTIC);
}

/* A NUL byte makes its line malformed, not the end of the file: the lines after it count. */
Test(tunedb, a_nul_byte_spoils_its_line_only)
{
    clattn_tunedb db = {0};
    char text[2048];
    int n = snprintf(text, sizeof text, "%s\n%s\n", CLATTN_TUNEDB_HEADER, good_line);
    text[n - 5] = '\0';   /* inside the entry's last fields */
    n += snprintf(text + n, sizeof text - (size_t)n, "%s\n",
                  KEY "\tforward\tf16\t128\t64\t1\tdecode\t4\t32\t8\t8");
    cr_assert_eq(clattn_tunedb_add_text(&db, text, (size_t)n, "test"), 1, "one malformed line");
    cr_assert_eq(db.count, 1);
    const clattn_tune_entry *e = find(&db, decode_problem, CLATTN_TILING_TUNED_EXACT);
    cr_assert_not_null(e, "the line after the NUL was dropped");
    cr_expect_eq(e->rows, 4);
    clattn_tunedb_free(&db);
}

/* Loading was quadratic (each entry compared with every earlier one): 150K lines took over 500
   s, far past this suite's timeout. Now it sorts once (0.4 s here); no timing is asserted, the
   timeout is what fails a quadratic load. */
Test(tunedb, a_150k_line_file_loads_every_entry)
{
    enum { LINES = 150000 };
    const size_t cap = (size_t)LINES * 96 + 64;
    char *text = malloc(cap);
    cr_assert_not_null(text);
    size_t n = (size_t)snprintf(text, cap, "%s\n", CLATTN_TUNEDB_HEADER);
    for (int i = 0; i < LINES; i++)
        n += (size_t)snprintf(text + n, cap - n, PLATFORM "|GPU %d|1.0\tforward\tf32\t%d\t64\t%d\t"
                              "prefill\t1\t64\t16\t4\n", i % 97, 1 + i % 512, i % 2);
    clattn_tunedb db = {0};
    cr_assert_eq(clattn_tunedb_add_text(&db, text, n, "test"), 0);
    cr_expect_eq(db.count, (size_t)LINES);
    clattn_tunedb_free(&db);
    free(text);
}

Test(tunedb, the_candidates_fit_and_include_the_heuristic)
{
    const clattn_device_probe probe = small_gpu();
    const clattn_problem p = {CLATTN_F32, 1, 8, 8, 1024, 1024, 64, 64, 0};
    clattn_tiling t[4096], heuristic;
    const size_t n = clattn_plan_candidates(&probe, &p, t, 4096);
    cr_assert(n > 10 && n <= 4096, "%zu candidates", n);
    cr_assert_eq(clattn_plan_forward(&probe, &p, &heuristic, NULL, 0), CLATTN_SUCCESS);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        cr_expect(clattn_tiling_fits(&probe, &t[i], NULL, 0));
        cr_expect(t[i].wg % 32 == 0, "a GPU candidate of wg=%d is not whole warps", t[i].wg);
        cr_expect(t[i].d_pad == 64 && t[i].dv_pad == 64);
        found |= t[i].rows == heuristic.rows && t[i].wg == heuristic.wg &&
                 t[i].block_n == heuristic.block_n && t[i].vec == heuristic.vec;
    }
    cr_expect(found, "the heuristic's tiling is not among the candidates");
    cr_expect_eq(clattn_plan_candidates(&probe, &p, t, 3), n, "a short buffer still counts all");
}
