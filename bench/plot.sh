#!/bin/sh
# plot.sh — a PNG bar chart of a clattn-bench CSV: GFLOP/s of clattn and of its peers, one
# cluster of bars per record (shape, dtype, causal, algo, pass).
#
#   clattn-bench --csv results.csv [other flags]
#   bench/plot.sh results.csv results.png ["title"]
#
# Bars: clattn (column gflops), the unfused CLBlast path (unfused_gflops), the OpenBLAS CPU
# peer (openblas_gflops). A peer that did not run (on backward records peers never run) leaves
# a gap, and so does a backward that clattn could not run; when a column has no value in any
# record, gnuplot warns "Skipping data file with no valid points" and still writes the PNG.
# Labels under each cluster give the pass (bwd; fwd is unmarked) and the shape (CSVs from
# before the pass column plot as forward); the title defaults to the device name in the
# first record. Needs gnuplot 5 (Debian: apt-get install gnuplot-nox) with the pngcairo
# terminal, else png. Columns are found by name, so CSVs with more columns still plot.
set -eu

if [ $# -lt 2 ] || [ $# -gt 3 ]; then
    echo "usage: $0 RESULTS.csv OUT.png [TITLE]" >&2
    exit 2
fi
csv=$1
png=$2
if [ ! -s "$csv" ]; then
    echo "$0: $csv is missing or empty" >&2
    exit 1
fi
command -v gnuplot >/dev/null 2>&1 || { echo "$0: gnuplot not found" >&2; exit 1; }

title=${3:-}
if [ -z "$title" ]; then   # the device: first field of the first record, unquoted
    title=$(sed -n '2{s/^"\([^"]*\)".*/\1/;p;q}' "$csv")
fi
records=$(($(wc -l < "$csv") - 1))
if head -n 1 "$csv" | tr ',' '\n' | grep -qx pass; then
    pass="strcol('pass') eq 'bwd' ? 'bwd ' : ''"
else
    pass="''"
fi
width=$((400 + 110 * records))
if echo 'set terminal' | gnuplot 2>&1 | grep -q pngcairo; then
    terminal="pngcairo size $width,700 noenhanced font ',10'"
else
    terminal="png size $width,700 noenhanced"
fi

gnuplot <<EOF
set terminal $terminal
set output '$png'
set datafile separator comma
set datafile missing ''
set title "$(printf '%s' "$title" | sed 's/"/\\"/g') (GFLOP/s; FLOPs as docs/semantics.md counts them)"
set ylabel 'GFLOP/s'
set style data histogram
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set key top right
set grid ytics
set yrange [0:*]
set xtics rotate by -35 left font ',8'
set bmargin 9
n(c) = int(column(c))
label(i) = sprintf('%s%s%s b%d h%d/%d s%d/%d d%d', $pass, strcol('dtype'), \
    n('causal') ? ' causal' : '', n('b'), n('hq'), n('hkv'), n('sq'), n('sk'), n('d'))
plot '$csv' using (column('gflops')):xtic(label(0)) title 'clattn' lc rgb '#1f77b4', \
     '' using (column('unfused_gflops')) title 'unfused (CLBlast)' lc rgb '#ff7f0e', \
     '' using (column('openblas_gflops')) title 'OpenBLAS peer' lc rgb '#2ca02c'
EOF
echo "$png"
