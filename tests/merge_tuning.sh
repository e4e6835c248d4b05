#!/usr/bin/env bash
# tools/merge_tuning: a good shared file replaces the entry with its key (and its comment) and
# appends a new one at the end, keeping the table's other lines; a malformed or foreign shared
# file (no header, an entry without clattn-bench --tune's comment, a class or any-driver device
# key, a bad field) is refused with FILE:LINE and leaves the table byte for byte as it was.
# Usage: merge_tuning.sh MERGE_TUNING_EXECUTABLE
set -uo pipefail
merge=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

T=$'\t'
key="Some Platform|Some GPU|1.2.3"
entry() {   # entry KEY CAUSAL ROWS: an f16 D=128 prefill entry
    echo "$1${T}forward${T}f16${T}128${T}128${T}$2${T}prefill${T}$3${T}64${T}32${T}4"
}
bench_comment() { echo "# clattn-bench --tune 2026-12-08: b=1 hq=16 ... causal=$1: rows=$2 ..."; }

{
    echo "clattn-tuning 1"
    echo "# the table's preamble, kept: a blank line parts it from the entry below"
    echo
    echo "# the comment of an entry, replaced with it"
    entry "$key" 0 1
    echo "# another entry's, kept"
    entry "$key" 1 1
    echo "# the end"
} > "$work/table.txt"
{
    echo "clattn-tuning 1"
    bench_comment 0 2
    entry "$key" 0 2
    echo
    bench_comment 0 4
    entry "Other Platform|Other GPU|9" 0 4
} > "$work/good.txt"
{
    echo "clattn-tuning 1"
    echo "# the table's preamble, kept: a blank line parts it from the entry below"
    echo
    bench_comment 0 2
    entry "$key" 0 2
    echo "# another entry's, kept"
    entry "$key" 1 1
    echo "# the end"
    bench_comment 0 4
    entry "Other Platform|Other GPU|9" 0 4
} > "$work/expected.txt"

cp "$work/table.txt" "$work/merged.txt"
"$merge" "$work/merged.txt" "$work/good.txt" > "$work/out" 2>&1 || fail "good file refused: $(cat "$work/out")"
diff "$work/expected.txt" "$work/merged.txt" || fail "merged table differs from the expected one"
[ ! -e "$work/merged.txt.tmp" ] || fail "temporary file left behind"

# refused NAME LINE CONTENT...: the shared file CONTENT (one argument a line) must be refused at
# LINE with the table untouched.
refused() {
    local name=$1 line=$2
    shift 2
    printf '%s\n' "$@" > "$work/$name.txt"
    cp "$work/table.txt" "$work/try.txt"
    if "$merge" "$work/try.txt" "$work/good.txt" "$work/$name.txt" > "$work/out" 2>&1; then
        fail "$name: merged"
    elif ! grep -q "$name.txt:$line: " "$work/out"; then
        fail "$name: the message does not name line $line: $(cat "$work/out")"
    fi
    cmp -s "$work/table.txt" "$work/try.txt" || fail "$name: the table changed"
    echo "$name refused: $(cat "$work/out")"
}
refused no_header 1 "$(entry "$key" 0 8)"
refused other_version 1 "clattn-tuning 2" "$(bench_comment 0 8)" "$(entry "$key" 0 8)"
refused no_bench_comment 2 "clattn-tuning 1" "$(entry "$key" 0 8)"
refused comment_not_right_above 4 "clattn-tuning 1" "$(bench_comment 0 8)" "" "$(entry "$key" 0 8)"
refused any_driver 3 "clattn-tuning 1" "$(bench_comment 0 8)" \
    "$(entry "Some Platform|Some GPU|*" 0 8)"
refused device_class 3 "clattn-tuning 1" "$(bench_comment 0 8)" \
    "$(entry "Some Platform|[gpu]|1.2.3" 0 8)"
refused malformed 3 "clattn-tuning 1" "$(bench_comment 0 8)" "$(entry "$key" 2 8)"
refused short_line 3 "clattn-tuning 1" "$(bench_comment 0 8)" "$key${T}forward${T}f16"

"$merge" "$work/table.txt" > /dev/null 2>&1
[ $? -eq 2 ] || fail "no shared file: not a usage error"
[ $failures -eq 0 ] && echo "merge_tuning: all checks passed"
exit $((failures > 0))
