/* clattn-bench's output: the table on stdout (one line per shape and pass) and the --csv /
   --json records, one per (shape, dtype, causal, algo, pass), with the same columns in both. */
#ifndef CLATTN_BENCH_REPORT_H
#define CLATTN_BENCH_REPORT_H

#include <stdio.h>

#include "bench.h"

void report_table_header(const run_info *r);

/* The line of x's shape and pass, then one "  # ..." line per peer that was meant to run and
   did not. A record whose status is not SUCCESS shows "-" for its numbers and the reason in
   its plan column. */
void report_table_row(const run_info *r, const record *x);

/* One CSV line for x, after the header line when `first`. Strings are always quoted. */
void report_csv(FILE *f, const run_info *r, const record *x, int first);

/* One JSON object for x, in an array that `first` opens; report_json_end closes it (and
   writes an empty array when no record came). Missing values are null. */
void report_json(FILE *f, const run_info *r, const record *x, int first);
void report_json_end(FILE *f, int any);

#endif
