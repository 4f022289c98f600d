#!/usr/bin/env bash
# submit.sh: run sam2amg over a manifest as a Slurm job array of N tasks,
# one shard each, then merge the shards (see README, "Slurm").
#
#   jobs/slurm/submit.sh --manifest FILE --tasks N --out DIR [--gpus G]
#       [--time HH:MM:SS] [--partition P] [--cpus C] [-- run options...]
#
# Submits the array (--array=0-(N-1), --gres=gpu:G, --requeue,
# --signal=B:USR1@120; each task runs task.sh: `sam2amg run
# DIR/shard-K.db --devices all ...`) and a merge job that depends on it
# (--dependency=afterany, merge.sh: DIR/merged.db). Everything after --
# goes to `sam2amg run` (e.g. --model, AMG flags). DIR must be on a
# filesystem every node sees. $SAM2AMG names the program (default: the
# sam2amg on PATH, resolved now). Prints the two job ids.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
manifest= tasks= out= gpus=1 time=04:00:00 partition= cpus=4
while [ $# -gt 0 ]; do
    case $1 in
    --manifest) manifest=$2; shift 2 ;;
    --tasks) tasks=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    --gpus) gpus=$2; shift 2 ;;
    --time) time=$2; shift 2 ;;
    --partition) partition=$2; shift 2 ;;
    --cpus) cpus=$2; shift 2 ;;
    --) shift; break ;;
    -h | --help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "submit.sh: unknown option '$1' (see --help)" >&2; exit 2 ;;
    esac
done
[ -n "$manifest" ] && [ -n "$tasks" ] && [ -n "$out" ] ||
    { echo "submit.sh: --manifest, --tasks and --out are required" >&2; exit 2; }
[[ $tasks =~ ^[1-9][0-9]*$ ]] || { echo "submit.sh: --tasks: '$tasks' is not a count" >&2; exit 2; }
[[ $gpus =~ ^[0-9]+$ ]] || { echo "submit.sh: --gpus: '$gpus' is not a count" >&2; exit 2; }
sam2amg=${SAM2AMG:-$(command -v sam2amg || true)}
[ -x "$sam2amg" ] || { echo "submit.sh: sam2amg not found (set SAM2AMG)" >&2; exit 2; }
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
manifest=$(cd "$(dirname "$manifest")" && pwd)/$(basename "$manifest")
# SAM2AMG goes through the environment (--export=ALL), not
# --export=ALL,SAM2AMG=PATH: sbatch splits that list at commas, so a path
# with a comma would be cut
export SAM2AMG=$sam2amg
common=(--parsable --time="$time" --cpus-per-task="$cpus" --export=ALL)
[ -n "$partition" ] && common+=(--partition="$partition")
gres=()
[ "$gpus" -gt 0 ] && gres=(--gres=gpu:"$gpus")
# ${gres[@]+...}: an empty array is "unbound" under set -u in bash < 4.4
array=$(sbatch "${common[@]}" ${gres[@]+"${gres[@]}"} --job-name=sam2amg --array=0-$((tasks - 1)) \
    --requeue --signal=B:USR1@120 --open-mode=append --output="$out/logs/task-%A_%a.out" \
    "$here/task.sh" "$out" "$manifest" --devices all "$@")
array=${array%%;*}
merge=$(sbatch "${common[@]}" --cpus-per-task=1 --job-name=sam2amg-merge \
    --dependency=afterany:"$array" --output="$out/logs/merge-%j.out" \
    "$here/merge.sh" "$out" "$tasks")
merge=${merge%%;*}
echo "array $array"
echo "merge $merge"
