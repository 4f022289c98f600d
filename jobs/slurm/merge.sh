#!/usr/bin/env bash
# merge.sh: the job that runs after the array (submit.sh, afterany): merges
# OUT/shard-*.db into OUT/merged.db. The merge runs on a node-local copy
# ($SLURM_TMPDIR or $TMPDIR; SQLite is not safe on NFS), starting from
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
"$sam2amg" merge "$tmp/merged.db" "${shards[@]}"
rc=$?
echo "merge.sh: sam2amg merge exited $rc"
[ "$rc" -eq 0 ] || [ "$rc" -eq 3 ] || exit "$rc"
# a rollback journal: readers of OUT/merged.db on NFS need no -shm
"$sam2amg" sql "$tmp/merged.db" --write "PRAGMA journal_mode = DELETE" >/dev/null || exit 1
cp "$tmp/merged.db" "$out/merged.db.tmp" && sync "$out/merged.db.tmp" &&
    mv -f "$out/merged.db.tmp" "$out/merged.db" && sync "$out" || exit 1
echo "merge.sh: wrote $out/merged.db"
exit "$rc"
