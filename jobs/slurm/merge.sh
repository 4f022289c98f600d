#!/usr/bin/env bash
# merge.sh: the job that runs after the array (submit.sh, afterany): merges
# OUT/shard-*.db into OUT/merged.db. The merge runs on node-local copies
# ($SLURM_TMPDIR or $TMPDIR; SQLite is not safe on NFS, and on Lustre
# mounted noflock cannot even read) of merged.db and of each shard in turn,
# starting from
# the previous OUT/merged.db when there is one (merge is idempotent), and
# the result is copied beside OUT/merged.db, fsynced and renamed over it:
# a killed merge never leaves a half-written OUT/merged.db.
#
# usage (from submit.sh): merge.sh OUT N
set -u
out=$1 n=$2
sam2amg=${SAM2AMG:-sam2amg}
tmp=$(mktemp -d "${SLURM_TMPDIR:-${TMPDIR:-/tmp}}/sam2amg-merge.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
shards=()
for ((k = 0; k < n; k++)); do [ -f "$out/shard-$k.db" ] && shards+=("$out/shard-$k.db"); done
[ ${#shards[@]} -gt 0 ] || { echo "merge.sh: no shard database in $out"; exit 1; }
[ -f "$out/merged.db" ] && cp "$out/merged.db" "$tmp/merged.db"
# each shard is merged from a local copy, one at a time: SQLite takes locks
# even to read, which Lustre mounted noflock (and some NFS) refuses; a plain
# copy needs none, and a checkpoint is only ever renamed into place, so the
# copy is whole. merge is incremental: the last call's report and status
# cover every shard merged so far; a refused shard makes the status 1.
rc=0 last=0
for s in "${shards[@]}"; do
    c=$tmp/$(basename "$s")
    cp "$s" "$c" || { echo "merge.sh: cannot copy $s to $tmp"; exit 1; }
    "$sam2amg" merge "$tmp/merged.db" "$c" >"$tmp/report.txt" 2>&1
    last=$?
    rm -f "$c"
    if [ "$last" -ne 0 ] && [ "$last" -ne 3 ]; then
        cat "$tmp/report.txt"; echo "merge.sh: $s: sam2amg merge exited $last"; rc=1
    fi
done
cat "$tmp/report.txt"
[ "$rc" -ne 0 ] || rc=$last
echo "merge.sh: sam2amg merge exited $rc"
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || exit "$rc"
# a rollback journal: readers of OUT/merged.db on NFS need no -shm
"$sam2amg" sql "$tmp/merged.db" --write "PRAGMA journal_mode = DELETE" >/dev/null || exit 1
cp "$tmp/merged.db" "$out/merged.db.tmp" && sync "$out/merged.db.tmp" &&
    mv -f "$out/merged.db.tmp" "$out/merged.db" && sync "$out" || exit 1
echo "merge.sh: wrote $out/merged.db"
exit "$rc"
