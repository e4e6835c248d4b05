/* clattn-bench's table, CSV and JSON. The table's numeric columns come from one list (columns);
   the CSV and JSON columns come from one list of fields per record (record_fields), so the two
   formats always carry the same columns in the same order. A value that was not measured is
   "-" in the table, empty in the CSV and null in the JSON. */
#include "report.h"

#include <math.h>
#include <string.h>

static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const algo_names[] = {"auto", "fused", "split_kv", "unfused"};
static const char *const pass_names[] = {"fwd", "bwd"};

/* ---------------------------------------------------------------------------------------- */
/* Table                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void shape_name(const shape *s, char *buf, size_t size)
{
    snprintf(buf, size, "b=%lld hq=%lld hkv=%lld sq=%lld sk=%lld d=%lld dv=%lld %s",
             (long long)s->b, (long long)s->hq, (long long)s->hkv, (long long)s->sq,
             (long long)s->sk, (long long)s->d, (long long)s->dv, s->bshd ? "bshd" : "bhsd");
}

/* The numeric columns between the shape's words and the plan, in order. A column is as wide
   as its width or its name, whichever is wider. */
typedef struct column {
    const char *name;
    int width, decimals;
} column;

static const column columns[] = {
    {"median_ms", 10, 3}, {"min_ms", 10, 3}, {"GFLOP/s", 10, 1}, {"bwd/fwd", 7, 2},
    {"KV_GB/s", 8, 2}, {"scratch_MiB", 11, 1}, {"%peakF", 6, 1}, {"%peakBW", 7, 1},
    {"unfused_GF", 10, 1}, {"x_unfused", 9, 2}, {"openblas_GF", 11, 1}, {"x_openblas", 10, 2},
};
#define COLUMNS (sizeof columns / sizeof columns[0])

static int column_width(const column *c)
{
    int n = (int)strlen(c->name);
    return c->width > n ? c->width : n;
}

void report_table_header(const run_info *r)
{
    (void)r;
    printf("%-44s %-5s %-6s %-4s", "shape", "dtype", "causal", "pass");
    for (size_t i = 0; i < COLUMNS; i++)
        printf(" %*s", column_width(&columns[i]), columns[i].name);
    printf("  %s\n", "plan");
}

static void print_peer_note(const char *name, const peer *p)
{
    if (!p->ran && p->note[0])
        printf("  # %s: %s\n", name, p->note);
}

void report_table_row(const run_info *r, const record *x)
{
    const timing *t = &x->ours;
    int ran = t->status == CLATTN_SUCCESS;
    const struct {
        double x;
        int present;
    } cells[COLUMNS] = {
        {t->median_ms, ran}, {t->min_ms, ran}, {t->gflops, ran}, {x->bwd_fwd, x->bwd_fwd >= 0},
        {t->gbps, ran}, {(double)t->workspace / (1 << 20), ran && t->has_workspace},
        {x->pct_flops, r->peak && x->pct_flops >= 0}, {x->pct_bw, r->peak && x->pct_bw >= 0},
        {x->unfused.gflops, x->unfused.ran}, {x->unfused.ratio, x->unfused.ran},
        {x->blas.gflops, x->blas.ran}, {x->blas.ratio, x->blas.ran},
    };
    char name[128];
    shape_name(&x->s, name, sizeof name);
    printf("%-44s %-5s %-6s %-4s", name, dtype_names[x->s.dtype], x->s.causal ? "yes" : "no",
           pass_names[x->pass]);
    for (size_t i = 0; i < COLUMNS; i++) {
        int width = column_width(&columns[i]);
        if (cells[i].present)
            printf(" %*.*f", width, columns[i].decimals, cells[i].x);
        else
            printf(" %*s", width, "-");
    }
    printf("  %s\n", t->plan);
    print_peer_note("unfused", &x->unfused);
    print_peer_note("openblas", &x->blas);
    fflush(stdout);
}

/* ---------------------------------------------------------------------------------------- */
/* Fields                                                                                    */
/* ---------------------------------------------------------------------------------------- */

enum field_kind { FIELD_TEXT, FIELD_NUMBER, FIELD_INTEGER, FIELD_MISSING };

typedef struct field {
    const char *name;
    enum field_kind kind;
    const char *text;
    double number;
} field;

#define MAX_FIELDS 48

typedef struct field_list {
    field f[MAX_FIELDS];
    size_t n;
} field_list;

static void add(field_list *l, const char *name, enum field_kind kind, const char *text,
                double number)
{
    if (l->n < MAX_FIELDS) {
        field x = {name, kind, text, number};
        l->f[l->n++] = x;
    }
}

static void add_text(field_list *l, const char *name, const char *text)
{
    add(l, name, text ? FIELD_TEXT : FIELD_MISSING, text, 0.0);
}

static void add_number(field_list *l, const char *name, double x, int present)
{
    add(l, name, present && isfinite(x) ? FIELD_NUMBER : FIELD_MISSING, NULL, x);
}

static void add_integer(field_list *l, const char *name, double x)
{
    add(l, name, FIELD_INTEGER, NULL, x);
}

static void shape_fields(field_list *l, const run_info *r, const record *x)
{
    const shape *s = &x->s;
    add_text(l, "device", r->device);
    add_integer(l, "b", (double)s->b);
    add_integer(l, "hq", (double)s->hq);
    add_integer(l, "hkv", (double)s->hkv);
    add_integer(l, "sq", (double)s->sq);
    add_integer(l, "sk", (double)s->sk);
    add_integer(l, "d", (double)s->d);
    add_integer(l, "dv", (double)s->dv);
    add_text(l, "layout", s->bshd ? "bshd" : "bhsd");
    add_text(l, "dtype", dtype_names[s->dtype]);
    add_integer(l, "causal", s->causal);
    add_text(l, "algo", algo_names[x->algo]);
    add_text(l, "pass", pass_names[x->pass]);
}

static void timing_fields(field_list *l, const run_info *r, const record *x)
{
    const timing *t = &x->ours;
    int ran = t->status == CLATTN_SUCCESS;
    add_text(l, "plan", t->plan);
    add_number(l, "median_ms", t->median_ms, ran);
    add_number(l, "min_ms", t->min_ms, ran);
    add_number(l, "gflops", t->gflops, ran);
    add_number(l, "ratio_bwd_fwd", x->bwd_fwd, x->bwd_fwd >= 0);
    add_number(l, "kv_gbps", t->gbps, ran);
    add(l, "scratch_bytes", ran && t->has_workspace ? FIELD_INTEGER : FIELD_MISSING, NULL,
        (double)t->workspace);
    add_number(l, "peak_gflops", r->peak_gflops, r->peak);
    add_number(l, "peak_gbps", r->peak_gbps, r->peak);
    add_number(l, "pct_peak_flops", x->pct_flops, r->peak && x->pct_flops >= 0);
    add_number(l, "pct_peak_bw", x->pct_bw, r->peak && x->pct_bw >= 0);
}

/* names: median_ms, min_ms, gflops, ratio, note of this peer. */
static void peer_fields(field_list *l, const peer *p, const char *const names[5])
{
    add_number(l, names[0], p->median_ms, p->ran);
    add_number(l, names[1], p->min_ms, p->ran);
    add_number(l, names[2], p->gflops, p->ran);
    add_number(l, names[3], p->ratio, p->ran);
    add_text(l, names[4], p->note[0] ? p->note : NULL);
}

static void record_fields(field_list *l, const run_info *r, const record *x)
{
    static const char *const unfused[] = {"unfused_median_ms", "unfused_min_ms",
                                          "unfused_gflops", "ratio_unfused", "unfused_note"};
    static const char *const blas[] = {"openblas_median_ms", "openblas_min_ms",
                                       "openblas_gflops", "ratio_openblas", "openblas_note"};
    l->n = 0;
    shape_fields(l, r, x);
    timing_fields(l, r, x);
    peer_fields(l, &x->unfused, unfused);
    peer_fields(l, &x->blas, blas);
    add_number(l, "openblas_max_rel_err", x->blas.max_rel_err, x->blas.max_rel_err >= 0.0);
    add_text(l, "openblas_core", r->blas_core);
    add_text(l, "openblas_core_chosen_by", r->blas_core ? r->blas_how : NULL);
    add_text(l, "openblas_threading", r->blas_core ? r->blas_threading : NULL);
}

/* ---------------------------------------------------------------------------------------- */
/* CSV and JSON                                                                              */
/* ---------------------------------------------------------------------------------------- */

static void csv_value(FILE *f, const field *x)
{
    if (x->kind == FIELD_NUMBER)
        fprintf(f, "%.6g", x->number);
    else if (x->kind == FIELD_INTEGER)
        fprintf(f, "%.0f", x->number);
    else if (x->kind == FIELD_TEXT) {
        fputc('"', f);
        for (const char *c = x->text; *c; c++)
            if (*c == '"')
                fputs("\"\"", f);
            else
                fputc(*c == '\n' ? ' ' : *c, f);
        fputc('"', f);
    }
}

void report_csv(FILE *f, const run_info *r, const record *x, int first)
{
    field_list l;
    record_fields(&l, r, x);
    for (size_t i = 0; first && i < l.n; i++)
        fprintf(f, "%s%s", l.f[i].name, i + 1 < l.n ? "," : "\n");
    for (size_t i = 0; i < l.n; i++) {
        csv_value(f, &l.f[i]);
        fputc(i + 1 < l.n ? ',' : '\n', f);
    }
    fflush(f);
}

static void json_string(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
    fputc('"', f);
}

void report_json(FILE *f, const run_info *r, const record *x, int first)
{
    field_list l;
    record_fields(&l, r, x);
    fputs(first ? "[\n  {" : ",\n  {", f);
    for (size_t i = 0; i < l.n; i++) {
        fprintf(f, "%s\"%s\": ", i ? ", " : "", l.f[i].name);
        if (l.f[i].kind == FIELD_TEXT)
            json_string(f, l.f[i].text);
        else if (l.f[i].kind == FIELD_MISSING)
            fputs("null", f);
        else
            csv_value(f, &l.f[i]);
    }
    fputc('}', f);
    fflush(f);
}

void report_json_end(FILE *f, int any)
{
    fputs(any ? "\n]\n" : "[]\n", f);
    fflush(f);
}
