/* The tuning database as pure code: parsing, formatting, overlays, lookup, and the planner
   taking a tuned tiling only when it fits the device. No device needed. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "tunedb.h"

#define KEY "Some Platform|Some GPU|1.2.3"

static const char *const good_line =
    KEY "\tforward\tf16\t128\t64\t1\tdecode\t2\t64\t16\t4";

Test(tunedb, parses_every_field)
{
    clattn_tune_entry e;
    cr_assert_eq(clattn_tunedb_parse_line(good_line, &e), 1);
    cr_expect_str_eq(e.key.device, KEY);
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
    cr_expect_eq(clattn_tunedb_add_text(&db, "not the header\n", "test"), -1);
    cr_expect_eq(db.count, 0);
    char text[2048];
    snprintf(text, sizeof text, "%s\n%s\ngarbage line\n# comment\n\n%s\n", CLATTN_TUNEDB_HEADER,
             good_line, KEY "\tforward\tf32\t64\t64\t0\tprefill\t8\t1\t32\t16");
    cr_expect_eq(clattn_tunedb_add_text(&db, text, "test"), 1);
    cr_expect_eq(db.count, 2);
    clattn_tunedb_free(&db);
}

Test(tunedb, later_entries_for_a_key_win_and_find_matches_exactly)
{
    clattn_tunedb db = {0};
    char text[2048];
    snprintf(text, sizeof text, "%s\n%s\n%s\n", CLATTN_TUNEDB_HEADER, good_line,
             KEY "\tforward\tf16\t128\t64\t1\tdecode\t4\t32\t8\t8");
    cr_assert_eq(clattn_tunedb_add_text(&db, text, "test"), 0);
    cr_assert_eq(db.count, 1);
    clattn_problem p = {CLATTN_F16, 1, 8, 8, 1, 4096, 128, 64, 1};
    clattn_tune_key key = clattn_tune_key_of(KEY, &p);
    const clattn_tune_entry *e = clattn_tunedb_find(&db, &key);
    cr_assert_not_null(e);
    cr_expect(e->rows == 4 && e->wg == 32 && e->block_n == 8 && e->vec == 8);
    p.causal = 0;
    key = clattn_tune_key_of(KEY, &p);
    cr_expect_null(clattn_tunedb_find(&db, &key), "causal differs: no entry");
    p.causal = 1;
    p.seq_q = 1024;
    key = clattn_tune_key_of(KEY, &p);
    cr_expect_null(clattn_tunedb_find(&db, &key), "prefill differs from decode: no entry");
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
    cr_assert_eq(clattn_plan_call(&probe, &p, CLATTN_ALGO_AUTO, &tuned, &plan, why, sizeof why),
                 CLATTN_SUCCESS);
    cr_expect(plan.tuned && plan.tiling.rows == 2 && plan.tiling.wg == 32 &&
              plan.tiling.block_m == 64 && plan.tiling.block_n == 16);

    /* too much local memory for this device: the heuristic's tiling runs instead */
    cr_assert_eq(clattn_tunedb_parse_line(KEY "\tforward\tf32\t64\t64\t0\tprefill\t1\t64\t256\t4",
                                          &e), 1);
    tuned = clattn_tunedb_tiling(&e, &p);
    cr_assert_eq(clattn_plan_call(&probe, &p, CLATTN_ALGO_AUTO, &tuned, &plan, why, sizeof why),
                 CLATTN_SUCCESS);
    cr_expect_not(plan.tuned);
    cr_expect(clattn_tiling_fits(&probe, &plan.tiling, NULL, 0));

    /* a work-group over the device's limit: ignored too */
    cr_assert_eq(clattn_tunedb_parse_line(KEY "\tforward\tf32\t64\t64\t0\tprefill\t1\t1024\t16\t4",
                                          &e), 1);
    tuned = clattn_tunedb_tiling(&e, &p);
    cr_assert_eq(clattn_plan_call(&probe, &p, CLATTN_ALGO_AUTO, &tuned, &plan, why, sizeof why),
                 CLATTN_SUCCESS);
    cr_expect_not(plan.tuned);
}
