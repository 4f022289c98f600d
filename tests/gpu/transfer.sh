#!/usr/bin/env bash
# transfer.sh FILE...: will the device tool carry these archives (or folders)? What one
# call sends is the tracked tree plus untracked files git does not ignore
# plus the carried paths, 64 MiB at most; this adds them up (FILEs that do
# not exist count 0) and exits 1 above 63 MiB, a MiB kept for the files a
# session adds before its call.
set -u
cd "$(dirname "$0")/../.."
limit=$((63 << 20))
tracked=$(git ls-files -z --cached --others --exclude-standard 2>/dev/null |
          xargs -0 -r stat -c %s 2>/dev/null | awk '{ s += $1 } END { print s + 0 }')
total=$tracked
line="tracked and untracked $tracked"
for f in "$@"; do
    if [ -d "$f" ]; then   # a carried folder: what it holds (apparent sizes)
        n=$(du -sb "$f" 2>/dev/null | cut -f1)
    else
        n=$(stat -c %s "$f" 2>/dev/null || echo 0)
    fi
    n=${n:-0}
    total=$((total + n))
    line="$line + $(basename "$f") $n"
done
echo "  transfer:  $line = $total bytes ($(awk "BEGIN { printf \"%.1f\", $total / 1048576 }") MiB of the tool's 64)"
if [ "$total" -gt "$limit" ]; then
    echo "transfer.sh: $total bytes is over 63 MiB: the device tool refuses a call over 64" >&2
    exit 1
fi
