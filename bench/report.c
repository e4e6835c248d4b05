/* clattn-bench's table, CSV and JSON. The CSV and JSON columns come from one list of fields per
   record (record_fields), so the two formats always carry the same columns in the same order. */
#include "report.h"

#include <math.h>
#include <string.h>

static const char *const dtype_names[] = {"f32", "f16", "bf16"};
static const char *const algo_names[] = {"auto", "fused", "split_kv", "unfused"};

/* ---------------------------------------------------------------------------------------- */
/* Table                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void shape_name(const shape *s, char *buf, size_t size)
{
    snprintf(buf, size, "b=%lld hq=%lld hkv=%lld sq=%lld sk=%lld d=%lld dv=%lld %s",
             (long long)s->b, (long long)s->hq, (long long)s->hkv, (long long)s->sq,
             (long long)s->sk, (long long)s->d, (long long)s->dv, s->bshd ? "bshd" : "bhsd");
}

/* x with `decimals` in a column of `width`, or "-" when absent. */
static void cell(char *buf, size_t size, int width, int decimals, double x, int present)
{
    if (present)
        snprintf(buf, size, "%*.*f", width, decimals, x);
    else
        snprintf(buf, size, "%*s", width, "-");
}

void report_table_header(const run_info *r)
{
    (void)r;
    printf("%-44s %-5s %-6s %10s %10s %10s %8s %11s %6s %7s %10s %9s %10s %9s  %s\n", "shape",
           "dtype", "causal", "median_ms", "min_ms", "GFLOP/s", "KV_GB/s", "scratch_MiB",
           "%peakF", "%peakBW", "unfused_GF", "x_unfused", "openblas_GF", "x_openblas", "plan");
}

static void print_peer_note(const char *name, const peer *p)
{
    if (!p->ran && p->note[0])
        printf("  # %s: %s\n", name, p->note);
}

void report_table_row(const run_info *r, const record *x)
{
    char name[128], c[6][32];
    const timing *t = &x->ours;
    shape_name(&x->s, name, sizeof name);
    cell(c[0], sizeof c[0], 6, 1, x->pct_flops, r->peak);
    cell(c[1], sizeof c[1], 7, 1, x->pct_bw, r->peak);
    cell(c[2], sizeof c[2], 10, 1, x->unfused.gflops, x->unfused.ran);
    cell(c[3], sizeof c[3], 9, 2, x->unfused.ratio, x->unfused.ran);
    cell(c[4], sizeof c[4], 10, 1, x->blas.gflops, x->blas.ran);
    cell(c[5], sizeof c[5], 9, 2, x->blas.ratio, x->blas.ran);
    printf("%-44s %-5s %-6s %10.3f %10.3f %10.1f %8.2f %11.1f %s %s %s %s %s %s  %s\n", name,
           dtype_names[x->s.dtype], x->s.causal ? "yes" : "no", t->median_ms, t->min_ms,
           t->gflops, t->gbps, (double)t->workspace / (1 << 20), c[0], c[1], c[2], c[3], c[4],
           c[5], t->plan);
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
}

static void timing_fields(field_list *l, const run_info *r, const record *x)
{
    const timing *t = &x->ours;
    add_text(l, "plan", t->plan);
    add_number(l, "median_ms", t->median_ms, 1);
    add_number(l, "min_ms", t->min_ms, 1);
    add_number(l, "gflops", t->gflops, 1);
    add_number(l, "kv_gbps", t->gbps, 1);
    add_integer(l, "scratch_bytes", (double)t->workspace);
    add_number(l, "peak_gflops", r->peak_gflops, r->peak);
    add_number(l, "peak_gbps", r->peak_gbps, r->peak);
    add_number(l, "pct_peak_flops", x->pct_flops, r->peak);
    add_number(l, "pct_peak_bw", x->pct_bw, r->peak);
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
