#!/usr/bin/env bash
# test_models.sh: --model names resolved offline (models.h) and the
# transformers checkpoint layout.
#
# Builds a Hugging Face hub cache the way huggingface_hub lays it out
# (models--ORG--NAME/{refs,snapshots,blobs}, snapshot files as relative
# symlinks into blobs/ named by SHA-256, two revisions of one repo, a SAM 2.0
# and SAM 2.1 repo, a transformers-only repo, a broken download, a snapshot
# without the file) around the fixtures' weights, then checks:
#  - names resolve through $HF_HUB_CACHE, $HF_HOME and ~/.cache (HOME set to
#    a temp dir), by repo id, hf://, ORG/NAME/FILE, bare name, --revision
#    (ref or commit), --model-dir and $SAM2AMG_MODELS;
#  - `dump` through a name gives the same bytes as through the file path;
#  - the transformers layout: a file written by transformers' own
#    Sam2Model.save_pretrained (tests/fixtures/hf-transformers) loads with no
#    --config, its `dump` matches transformers' own outputs, and the same
#    weights in the official layout give identical `dump` bytes; files made
#    from the fixture by tests/make_hf_layout.py (with and without the
#    prompt encoder's copy of the positional matrix) too;
#  - a missing model, a broken symlink, a snapshot without the file and an
#    unknown revision each give exit 1 and one line on stderr;
#  - `sam2amg models` lists what is there (text and --json);
#  - `sam2amg run` records the name as given and the resolved file.
set -u
BUILD=${BUILD:-build}
cd "$(dirname "$0")/.."
bin=$PWD/$BUILD/sam2amg
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0 failed=0
ok() { echo "ok - $1"; passed=$((passed + 1)); }
notok() { echo "not ok - $1: $2"; failed=$((failed + 1)); }
check() {   # name cond-command...
    local name=$1; shift
    if "$@"; then ok "$name"; else notok "$name" "$(head -c 400 "$tmp/err" 2>/dev/null)"; fi
}
# a clean environment: only what each test sets
unset HF_HUB_CACHE HUGGINGFACE_HUB_CACHE HF_HOME XDG_CACHE_HOME SAM2AMG_MODELS
export HOME=$tmp/nohome
M=tests/fixtures/micro M2=tests/fixtures/micro2
hub=$tmp/hub

# ---- the cache, as huggingface_hub writes it ----
blob() {   # repo-dir file -> prints the blob name (sha256, as hf does for LFS files)
    local sha=$(sha256sum "$2" | cut -c1-64)
    mkdir -p "$1/blobs"
    cp "$2" "$1/blobs/$sha"
    echo "$sha"
}
snapfile() {   # repo-dir commit name source-file
    mkdir -p "$1/snapshots/$2"
    local b=$(blob "$1" "$4")
    ln -s "../../blobs/$b" "$1/snapshots/$2/$3"
}
ref() { mkdir -p "$(dirname "$1/refs/$2")"; printf '%s' "$3" >"$1/refs/$2"; }
rev1=1111111111111111111111111111111111111111
rev2=2222222222222222222222222222222222222222
rev3=3333333333333333333333333333333333333333
rev4=4444444444444444444444444444444444444444
rev5=5555555555555555555555555555555555555555
rev6=6666666666666666666666666666666666666666
mkdir -p "$tmp/hf" "$tmp/hf-tied" "$tmp/hf-bad"
"$PY" tests/make_hf_layout.py $M/weights.safetensors $M/meta.json "$tmp/hf" ||
    notok "make_hf_layout.py runs" "see above"
"$PY" tests/make_hf_layout.py $M/weights.safetensors $M/meta.json "$tmp/hf-tied" --tied
# SAM 2.1 large: main = micro2 weights (no config.json), pr/1 = micro (.pt) + config.json
L=$hub/models--facebook--sam2.1-hiera-large
snapfile "$L" $rev1 sam2.1_hiera_large.pt $M/weights.pt
snapfile "$L" $rev1 config.json "$tmp/hf/config.json"
snapfile "$L" $rev2 sam2.1_hiera_large.pt $M2/weights.safetensors
ref "$L" main $rev2
ref "$L" pr/1 $rev1
# SAM 2.0 tiny
T2=$hub/models--facebook--sam2-hiera-tiny
snapfile "$T2" $rev3 sam2_hiera_tiny.pt $M/weights.pt
ref "$T2" main $rev3
# SAM 2.1 small: only the transformers files
S=$hub/models--facebook--sam2.1-hiera-small
HT=tests/fixtures/hf-transformers   # written by transformers' save_pretrained
snapfile "$S" $rev4 model.safetensors $HT/model.safetensors
snapfile "$S" $rev4 config.json $HT/config.json
ref "$S" main $rev4
# SAM 2.1 base_plus: an interrupted download (the blob is gone)
B=$hub/models--facebook--sam2.1-hiera-base-plus
mkdir -p "$B/snapshots/$rev5" "$B/blobs"
ln -s ../../blobs/0123456789abcdef "$B/snapshots/$rev5/sam2.1_hiera_base_plus.pt"
ref "$B" main $rev5
# SAM 2.0 small: a snapshot without the checkpoint
S2=$hub/models--facebook--sam2-hiera-small
mkdir -p "$S2/snapshots/$rev6"
snapfile "$S2" $rev6 README.md $M/meta.json
ref "$S2" main $rev6

# ---- resolution through the three cache roots ----
expect_resolve() {   # test-name expected-path env-assignments... -- resolve-args...
    local name=$1 want=$2; shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$bin" models resolve "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$? got=$(head -n 1 "$tmp/out")
    if [ $rc -eq 0 ] && [ "$got" = "$want" ]; then ok "$name"
    else notok "$name" "exit $rc, got '$got', want '$want'; $(head -c 300 "$tmp/err")"; fi
}
Lmain=$L/snapshots/$rev2/sam2.1_hiera_large.pt
Lpr=$L/snapshots/$rev1/sam2.1_hiera_large.pt
expect_resolve "repo id via HF_HUB_CACHE -> refs/main snapshot" "$Lmain" HF_HUB_CACHE=$hub -- facebook/sam2.1-hiera-large
expect_resolve "hf:// repo id" "$Lmain" HF_HUB_CACHE=$hub -- hf://facebook/sam2.1-hiera-large
expect_resolve "ORG/NAME/FILE" "$Lmain" HF_HUB_CACHE=$hub -- facebook/sam2.1-hiera-large/sam2.1_hiera_large.pt
expect_resolve "bare checkpoint name" "$Lmain" HF_HUB_CACHE=$hub -- sam2.1_hiera_large
expect_resolve "bare checkpoint file name (.pt)" "$Lmain" HF_HUB_CACHE=$hub -- sam2.1_hiera_large.pt
expect_resolve "--revision pr/1 (a ref)" "$Lpr" HF_HUB_CACHE=$hub -- facebook/sam2.1-hiera-large --revision pr/1
expect_resolve "--revision COMMIT" "$Lpr" HF_HUB_CACHE=$hub -- sam2.1_hiera_large --revision $rev1
expect_resolve "repo id via HF_HOME (HF_HOME/hub)" "$Lmain" HF_HOME=$tmp -- facebook/sam2.1-hiera-large
mkdir -p "$tmp/home/.cache/huggingface"
ln -s "$hub" "$tmp/home/.cache/huggingface/hub"
expect_resolve "repo id via the default ~/.cache/huggingface/hub" \
    "$tmp/home/.cache/huggingface/hub/models--facebook--sam2.1-hiera-large/snapshots/$rev2/sam2.1_hiera_large.pt" \
    HOME=$tmp/home -- facebook/sam2.1-hiera-large
mkdir -p "$tmp/emptyhome/hub"
expect_resolve "HF_HUB_CACHE wins over HF_HOME" "$Lmain" HF_HUB_CACHE=$hub HF_HOME=$tmp/emptyhome -- facebook/sam2.1-hiera-large
expect_resolve "SAM 2.0 repo by bare name" "$T2/snapshots/$rev3/sam2_hiera_tiny.pt" HF_HUB_CACHE=$hub -- sam2_hiera_tiny
expect_resolve "transformers-only repo -> model.safetensors" "$S/snapshots/$rev4/model.safetensors" HF_HUB_CACHE=$hub -- facebook/sam2.1-hiera-small
expect_resolve "bare name falls back to the transformers file" "$S/snapshots/$rev4/model.safetensors" HF_HUB_CACHE=$hub -- sam2.1_hiera_small
HF_HUB_CACHE=$hub "$bin" models resolve sam2_hiera_tiny --json >"$tmp/out" 2>"$tmp/err"
check "resolve --json: SAM 2.0, config tiny, repo, commit" "$PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))
assert r["sam_version"] == "2.0" and r["config"] == "tiny", r
assert r["repo"] == "facebook/sam2-hiera-tiny" and r["revision"] == sys.argv[2], r
assert r["source"] == "hf-cache" and r["format"] == "official", r' "$tmp/out" $rev3

# ---- model directories ----
mkdir -p "$tmp/ckpts" "$tmp/ckpts2"
cp $M/weights.pt "$tmp/ckpts/sam2.1_hiera_large.pt"
cp $M2/weights.safetensors "$tmp/ckpts2/custom.safetensors"
expect_resolve "--model-dir beats the cache" "$tmp/ckpts/sam2.1_hiera_large.pt" HF_HUB_CACHE=$hub -- sam2.1_hiera_large --model-dir "$tmp/ckpts"
expect_resolve "\$SAM2AMG_MODELS (second entry), any file name" "$tmp/ckpts2/custom.safetensors" \
    SAM2AMG_MODELS="$tmp/none:$tmp/ckpts2" -- custom
expect_resolve "a path is a path" "$PWD/$M/weights.pt" HF_HUB_CACHE=$hub -- "$PWD/$M/weights.pt"

# ---- errors: exit 1, one line on stderr, nothing on stdout ----
expect_err() {   # name must-contain env... -- resolve-args
    local name=$1 want=$2; shift 2
    local envs=()
    while [ "$1" != "--" ]; do envs+=("$1"); shift; done
    shift
    env "${envs[@]}" "$bin" models resolve "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$? lines=$(wc -l <"$tmp/err") outn=$(wc -c <"$tmp/out")
    if [ $rc -eq 1 ] && [ "$lines" -eq 1 ] && [ "$outn" -eq 0 ] && grep -qF -- "$want" "$tmp/err"; then
        ok "$name"
    else
        notok "$name" "exit $rc, $lines lines, stdout $outn bytes, want '$want' in: $(head -c 600 "$tmp/err")"
    fi
}
expect_err "missing repo: the fetch command" "hf download facebook/sam2.1-hiera-tiny sam2.1_hiera_tiny.pt" \
    HF_HUB_CACHE=$hub -- facebook/sam2.1-hiera-tiny
grep -qF "$hub/models--facebook--sam2.1-hiera-tiny" "$tmp/err" && ok "missing repo: names where it looked" ||
    notok "missing repo: names where it looked" "$(cat "$tmp/err")"
grep -qF "download_ckpts.sh" "$tmp/err" && ok "missing repo: mentions the official script" ||
    notok "missing repo: mentions the official script" "$(cat "$tmp/err")"
expect_err "missing bare name: model dirs and cache listed" "$tmp/ckpts" \
    HF_HUB_CACHE=$hub -- sam2.1_hiera_tiny --model-dir "$tmp/ckpts"
expect_err "broken symlink" "broken symlink" HF_HUB_CACHE=$hub -- facebook/sam2.1-hiera-base-plus
expect_err "snapshot without the file" "has no sam2_hiera_small.pt or model.safetensors" \
    HF_HUB_CACHE=$hub -- facebook/sam2-hiera-small
expect_err "unknown revision" "no revision 'v9'" HF_HUB_CACHE=$hub -- facebook/sam2.1-hiera-large --revision v9
expect_err "unknown bare name" "not an official checkpoint name" HF_HUB_CACHE=$hub -- sam3_huge
expect_err "no cache at all (HOME unset)" "hf download facebook/sam2.1-hiera-large" -u HOME -- facebook/sam2.1-hiera-large
expect_err "missing path-like name" "no such file" HF_HUB_CACHE=$hub -- "$tmp/none/weights.pt"
# the same through a command that loads the model
HF_HUB_CACHE=$hub "$bin" dump --model facebook/sam2.1-hiera-tiny $M/image.png -o "$tmp/x.safetensors" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "^sam2amg dump: model 'facebook/sam2.1-hiera-tiny' not found" "$tmp/err" &&
    ok "dump with a missing model: exit 1, one line" || notok "dump with a missing model: exit 1, one line" "exit $rc: $(cat "$tmp/err")"
HF_HUB_CACHE=$hub "$bin" dump --model facebook/sam2.1-hiera-base-plus $M/image.png -o "$tmp/x.safetensors" \
    >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "broken symlink" "$tmp/err" &&
    ok "dump with a broken symlink: exit 1, one line" || notok "dump with a broken symlink: exit 1, one line" "exit $rc: $(cat "$tmp/err")"

# ---- loading through names: same bytes as through the file ----
dump() {   # out-file args...
    local out=$1; shift
    "$bin" dump "$@" $M/image.png -o "$out" --points-per-side 4 --points-per-batch 16 >"$tmp/log" 2>&1
}
dump "$tmp/ref-micro.safetensors" --model $M/weights.pt --config micro ||
    notok "dump micro by path" "$(tail -n 2 "$tmp/log")"
dump "$tmp/ref-micro2.safetensors" --model $M2/weights.safetensors --config micro2 ||
    notok "dump micro2 by path" "$(tail -n 2 "$tmp/log")"
same() {   # name file
    if cmp -s "$tmp/$2" "$3"; then ok "$1"; else notok "$1" "$(tail -n 2 "$tmp/log")"; fi
}
HF_HUB_CACHE=$hub dump "$tmp/a.safetensors" --model facebook/sam2.1-hiera-large --config micro2
same "dump by repo id (main, --config) = by path" ref-micro2.safetensors "$tmp/a.safetensors"
rm -f "$tmp/a.safetensors"
HF_HUB_CACHE=$hub dump "$tmp/a.safetensors" --model facebook/sam2.1-hiera-large --revision pr/1
same "dump by repo id --revision pr/1, config from the snapshot's config.json = by path" \
    ref-micro.safetensors "$tmp/a.safetensors"
rm -f "$tmp/a.safetensors"
HF_HOME=$tmp dump "$tmp/a.safetensors" --model sam2_hiera_tiny --config micro
same "dump by bare name via HF_HOME = by path" ref-micro.safetensors "$tmp/a.safetensors"
rm -f "$tmp/a.safetensors"
HF_HUB_CACHE=$hub dump "$tmp/a.safetensors" --model sam2.1_hiera_large --model-dir "$tmp/ckpts" --config micro
same "dump by bare name in --model-dir = by path" ref-micro.safetensors "$tmp/a.safetensors"

# ---- the transformers layout: a file transformers wrote itself ----
# hf-transformers/ is Sam2Model(micro config, seeded random weights)
# .save_pretrained() and transformers' own outputs on dump's input
# (tests/make_transformers_fixture.py); compared like tests/test_dump.sh
compare() {   # expected actual
    "$PY" - "$1" "$2" <<'PYEOF'
import json, struct, sys
import numpy as np
def load(p):
    b = open(p, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    out = {}
    for k, v in json.loads(b[8:8 + n]).items():
        if k != "__metadata__":
            s, e = v["data_offsets"]
            out[k] = np.frombuffer(b[8 + n + s:8 + n + e], np.float32).reshape(v["shape"])
    return out
exp, got = load(sys.argv[1]), load(sys.argv[2])
bad = 0
for k in ["input", "grid_points", "image_embed", "feat_s0", "feat_s1", "low_res_masks", "iou_preds"]:
    e, g = exp[k].astype(np.float64), got[k].astype(np.float64)
    if e.shape != g.shape:
        print("# %s: shape %s, expected %s" % (k, g.shape, e.shape)); bad += 1; continue
    d = float(np.max(np.abs(e - g))) if np.all(np.isfinite(g)) else float("inf")
    m = float(np.max(np.abs(e)))
    tol = 1e-4 if k in ("input", "grid_points") else 1e-3 * m
    print("# %-14s max diff %.3g  max|exp| %.3g  %s" % (k, d, m, "ok" if d <= tol else "FAIL"))
    bad += d > tol
sys.exit(1 if bad else 0)
PYEOF
}
rm -f "$tmp/a.safetensors"
HF_HUB_CACHE=$hub dump "$tmp/a.safetensors" --model facebook/sam2.1-hiera-small
if [ -f "$tmp/a.safetensors" ] && compare $HT/expected.safetensors "$tmp/a.safetensors"; then
    ok "transformers save_pretrained file via repo id, no --config: dump matches transformers' own outputs"
else notok "transformers file matches transformers' outputs" "$(tail -n 3 "$tmp/log")"; fi
cp "$tmp/a.safetensors" "$tmp/hf-real.safetensors" 2>/dev/null
rm -f "$tmp/a.safetensors"
"$PY" tests/make_hf_layout.py --reverse $HT $M/weights.safetensors "$tmp/official.safetensors" >"$tmp/log" 2>&1 &&
    ok "transformers' tensor names and the official ones correspond one to one" ||
    notok "transformers' names <-> official names" "$(cat "$tmp/log")"
dump "$tmp/a.safetensors" --model "$tmp/official.safetensors" --config micro
same "the same weights in the official layout: identical dump bytes" hf-real.safetensors "$tmp/a.safetensors"

# ---- the transformers layout: made from the fixture by make_hf_layout.py ----
rm -f "$tmp/a.safetensors"
dump "$tmp/a.safetensors" --model "$tmp/hf"
same "transformers layout without the prompt encoder's copy, diff-style config.json: identical" \
    ref-micro.safetensors "$tmp/a.safetensors"
rm -f "$tmp/a.safetensors"
dump "$tmp/a.safetensors" --model "$tmp/hf-tied"
same "transformers save_pretrained directory with the tied copy kept: identical" \
    ref-micro.safetensors "$tmp/a.safetensors"
rm -f "$tmp/a.safetensors"
dump "$tmp/a.safetensors" --model "$tmp/hf/model.safetensors" --config micro
same "transformers file by path with --config: identical" ref-micro.safetensors "$tmp/a.safetensors"
# two positional matrices that differ (transformers 5 keeps both; the
# official model has one) are refused
"$PY" - "$tmp/hf-tied/model.safetensors" "$tmp/hf-bad/model.safetensors" <<'PYEOF'
import json, struct, sys
b = bytearray(open(sys.argv[1], "rb").read())
n = struct.unpack("<Q", b[:8])[0]
h = json.loads(b[8:8 + n])
o = h["prompt_encoder.shared_embedding.positional_embedding"]["data_offsets"][0]
b[8 + n + o] ^= 0x40
open(sys.argv[2], "wb").write(b)
PYEOF
cp "$tmp/hf/config.json" "$tmp/hf-bad/"
dump "$tmp/x.safetensors" --model "$tmp/hf-bad"
rc=$?
[ $rc -eq 1 ] && grep -q "differs from shared_image_embedding" "$tmp/log" && ok "positional matrices that differ: exit 1" ||
    notok "positional matrices that differ: exit 1" "exit $rc: $(cat "$tmp/log")"
# config.json the program cannot run: a named key, exit 1
sed 's/"hidden_size": 16/"hidden_size": 16, "mlp_ratio": 3.0/' "$tmp/hf/config.json" >"$tmp/hf-bad/config.json"
cp "$tmp/hf/model.safetensors" "$tmp/hf-bad/model.safetensors"
dump "$tmp/x.safetensors" --model "$tmp/hf-bad"
rc=$?
[ $rc -eq 1 ] && grep -q "mlp_ratio" "$tmp/log" && ok "config.json with mlp_ratio 3: exit 1 naming it" ||
    notok "config.json with mlp_ratio 3: exit 1 naming it" "exit $rc: $(cat "$tmp/log")"

# ---- a hostile cache: refs/main a FIFO (opening it would block for ever)
# and a link to /dev/zero (NUL bytes, no commit) ----
hh=$tmp/hub-hostile
for r in fifo zero; do mkdir -p "$hh/models--facebook--sam2.1-hiera-$r/refs" "$hh/models--facebook--sam2.1-hiera-$r/snapshots"; done
mkfifo "$hh/models--facebook--sam2.1-hiera-fifo/refs/main"
ln -s /dev/zero "$hh/models--facebook--sam2.1-hiera-zero/refs/main"
for r in fifo zero; do
    HF_HUB_CACHE=$hh timeout 10 "$bin" models resolve facebook/sam2.1-hiera-$r >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "no revision 'main'" "$tmp/err" && ok "refs/main a $r: resolve says no revision, exit 1" ||
        notok "refs/main a $r: resolve exit 1" "exit $rc: $(cat "$tmp/err")"
done
HF_HUB_CACHE=$hh timeout 10 "$bin" models >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] && [ ! -s "$tmp/out" ] && ok "models with a FIFO / /dev/zero ref: lists nothing, exit 0" ||
    notok "models with a FIFO / /dev/zero ref" "exit $rc: $(cat "$tmp/out" "$tmp/err")"

# ORG/NAME/FILE with FILE over the buffer: refused, not cut short onto
# another file whose name is FILE's first 255 bytes
ht=$tmp/hub-trunc
mkdir -p "$ht/models--facebook--sam2.1-hiera-trunc/refs" "$ht/models--facebook--sam2.1-hiera-trunc/snapshots/$rev1"
ref "$ht/models--facebook--sam2.1-hiera-trunc" main $rev1
long=$(printf 'a%.0s' $(seq 252)).pt
cp $M/weights.pt "$ht/models--facebook--sam2.1-hiera-trunc/snapshots/$rev1/$long"
HF_HUB_CACHE=$ht "$bin" models resolve "facebook/sam2.1-hiera-trunc/${long}x" >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && grep -q "file name longer than" "$tmp/err" && ok "ORG/NAME/FILE with a 256-byte FILE: refused, exit 1" ||
    notok "ORG/NAME/FILE with a 256-byte FILE: refused" "exit $rc: $(cat "$tmp/out" "$tmp/err")"

# $SAM2AMG_MODELS longer than the buffer (4095 bytes): its cut entry is
# dropped, not read as the folder whose name it is cut to
mkdir -p "$tmp/ck"
cp $M/weights.pt "$tmp/ck/sam2.1_hiera_large.pt"
tail=":$tmp/ck"
pad=/$(printf 'a%.0s' $(seq $((4095 - ${#tail} - 1))))
SAM2AMG_MODELS="$pad$tail-other" "$bin" models resolve sam2.1_hiera_large >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && ! grep -q "$tmp/ck/" "$tmp/out" && ok "SAM2AMG_MODELS cut at the buffer: the cut entry is not used" ||
    notok "SAM2AMG_MODELS cut at the buffer" "exit $rc: $(cat "$tmp/out" "$tmp/err" | head -c 300)"

# ---- sam2amg models ----
SAM2AMG_MODELS=$tmp/ckpts HF_HUB_CACHE=$hub "$bin" models >"$tmp/out" 2>"$tmp/err"
rc=$?
n=$(($(wc -l <"$tmp/out") - 1))
[ $rc -eq 0 ] && [ $n -eq 5 ] && ok "models: 5 checkpoints (model dir, 2 revisions, 2.0 repo, transformers), broken ones left out" ||
    notok "models: 5 checkpoints" "exit $rc, $n lines: $(cat "$tmp/out" "$tmp/err")"
grep -q "^hf-cache .*facebook/sam2.1-hiera-large .*main@222222222222 .*sam2.1_hiera_large.pt .*large .*2.1 " "$tmp/out" &&
    ok "models: repo, ref@commit, file, config, version on one line" || notok "models: repo line" "$(cat "$tmp/out")"
SAM2AMG_MODELS=$tmp/ckpts HF_HUB_CACHE=$hub "$bin" models --json >"$tmp/out" 2>"$tmp/err"
check "models --json: entries, sizes, configs, versions" "$PY" -c '
import json, os, sys
rows = json.load(open(sys.argv[1]))
assert len(rows) == 5, rows
by = {(r["repo"], r["revision"], r["file"]): r for r in rows}
tiny = by[("facebook/sam2-hiera-tiny", "3" * 40, "sam2_hiera_tiny.pt")]
assert tiny["sam_version"] == "2.0" and tiny["config"] == "tiny" and tiny["ref"] == "main"
assert tiny["size"] == os.path.getsize("tests/fixtures/micro/weights.pt")
hf = by[("facebook/sam2.1-hiera-small", "4" * 40, "model.safetensors")]
assert hf["format"] == "transformers" and hf["config"] == "micro" and hf["sam_version"] == "2.1", hf
old = by[("facebook/sam2.1-hiera-large", "1" * 40, "sam2.1_hiera_large.pt")]
assert old["ref"] is None, old
d = by[(None, None, "sam2.1_hiera_large.pt")]
assert d["source"] == "model-dir" and d["path"].endswith("/ckpts/sam2.1_hiera_large.pt"), d
' "$tmp/out"
HOME=$tmp/emptyhome "$bin" models >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 0 ] && [ ! -s "$tmp/out" ] && grep -q "no checkpoints found" "$tmp/err" &&
    ok "models with an empty cache: says so" || notok "models with an empty cache" "exit $rc: $(cat "$tmp/out" "$tmp/err")"

# ---- never a network access: no socket() or connect() at all ----
if command -v strace >/dev/null 2>&1 && strace -f -o /dev/null true 2>/dev/null; then
    : >"$tmp/trace"
    for args in "models resolve facebook/sam2.1-hiera-tiny" "models" \
                "dump --model facebook/sam2.1-hiera-small $M/image.png -o $tmp/n.safetensors --points-per-side 2 --points-per-batch 4"; do
        HF_HUB_CACHE=$hub strace -f -e trace=socket,connect -o "$tmp/trace1" "$bin" $args >/dev/null 2>&1
        cat "$tmp/trace1" >>"$tmp/trace"
    done
    if grep -qE "socket\(|connect\(" "$tmp/trace"; then notok "no socket/connect syscalls" "$(grep -E 'socket|connect' "$tmp/trace" | head -3)"
    else ok "no socket/connect syscalls (strace: resolve of a missing model, models, dump by repo id)"; fi
else
    ok "# skip no socket/connect check: strace not usable here"
fi

# ---- the runs table: the name as given and the resolved file ----
mkdir -p "$tmp/imgs"
cp $M/image.png "$tmp/imgs/a.png"
printf '%s\n' "$tmp/imgs/a.png" >"$tmp/manifest.txt"
HF_HUB_CACHE=$hub "$bin" run "$tmp/db.sqlite" --manifest "$tmp/manifest.txt" --model facebook/sam2.1-hiera-small \
    --points-per-side 4 --quiet >"$tmp/log" 2>&1
rc=$?
[ $rc -eq 0 ] && ok "run --model REPO_ID (transformers layout, config.json)" || notok "run --model REPO_ID" "exit $rc: $(tail -n 3 "$tmp/log")"
"$PY" - "$tmp/db.sqlite" "$S/snapshots/$rev4/model.safetensors" >"$tmp/err" 2>&1 <<'PYEOF'
import hashlib, os, sqlite3, sys
db = sqlite3.connect(sys.argv[1])
name, path, sha = db.execute("SELECT model_name, model_path, model_sha256 FROM runs").fetchone()
assert name == "facebook/sam2.1-hiera-small", name
assert os.path.realpath(path) == os.path.realpath(sys.argv[2]), (path, sys.argv[2])
assert sha == hashlib.sha256(open(sys.argv[2], "rb").read()).hexdigest(), sha
# the snapshot file, not blobs/SHA256 (which names no repo, revision or file)
assert path == sys.argv[2], (path, sys.argv[2])
cfg = db.execute("SELECT config FROM runs").fetchone()[0]
assert cfg == os.path.join(os.path.dirname(sys.argv[2]), "config.json"), cfg
PYEOF
[ $? -eq 0 ] && ok "runs: model_name as given, model_path the snapshot file (not blobs/), sha256 of the file" ||
    notok "runs: model_name / model_path / sha256" "$(cat "$tmp/err")"
# a resume without --model from another folder stores the same paths
mkdir -p "$tmp/elsewhere"
(cd "$tmp/elsewhere" && "$bin" run "$tmp/db.sqlite" --manifest "$tmp/manifest.txt" --quiet) >"$tmp/log" 2>&1
rc=$?
n=$("$bin" sql "$tmp/db.sqlite" "SELECT count(DISTINCT model_path || '|' || config || '|' || model_name) || ' ' || count(*) FROM runs" 2>&1)
[ $rc -eq 0 ] && [ "$n" = "1 2" ] && ok "resume without --model from another folder: same name, file and config" ||
    notok "resume from another folder" "exit $rc, '$n': $(tail -n 3 "$tmp/log")"

# ---- odd refs, unreadable files, a folder named like a config, a resume ----
O=$hub/models--odd--refs
snapfile "$O" $rev1 model.safetensors $HT/model.safetensors
snapfile "$O" $rev1 config.json $HT/config.json
mkdir -p "$O/refs"
printf ' \t%s \t\r\n' $rev1 >"$O/refs/main"
expect_resolve "refs/main with whitespace around the commit" "$O/snapshots/$rev1/model.safetensors" \
    HF_HUB_CACHE=$hub -- odd/refs
expect_fail() {   # test-name grep-pattern resolve-args...
    local name=$1 pat=$2; shift 2
    HF_HUB_CACHE=$hub "$bin" models resolve "$@" >"$tmp/out" 2>"$tmp/err"
    local rc=$?
    if [ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q -- "$pat" "$tmp/err"; then ok "$name"
    else notok "$name" "exit $rc: $(head -c 400 "$tmp/err")"; fi
}
printf '..' >"$O/refs/main"
expect_fail "refs/main naming '..' is not a snapshot (was snapshots/.. = the repo folder)" "no revision 'main'" odd/refs
printf '%s' $rev1 >"$O/refs/main"
expect_fail "--revision .. is not a commit" "no revision '\.\.'" odd/refs --revision ..
expect_fail "--revision . is not a commit" "no revision '\.'" odd/refs --revision .
if [ "$(id -u)" -eq 0 ] && command -v setpriv >/dev/null 2>&1; then
    # as another user: a snapshot folder it may not search, a blob it may not read
    P=$tmp/perm
    mkdir -p "$P"
    cp -r "$O" "$P/"
    chmod 755 "$tmp" && chmod -R a+rX "$P"
    chmod 700 "$P/models--odd--refs/snapshots/$rev1"
    nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups env HF_HUB_CACHE="$P" "$@"; }
    nobody "$bin" models resolve odd/refs >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "snapshots/$rev1/model.safetensors: Permission denied" "$tmp/err" &&
        ok "a snapshot folder another user may not search: 'Permission denied' (was 'has no model.safetensors')" ||
        notok "unsearchable snapshot: Permission denied" "exit $rc: $(cat "$tmp/err")"
    chmod 755 "$P/models--odd--refs/snapshots/$rev1"
    chmod 600 "$P"/models--odd--refs/blobs/*
    nobody "$bin" models resolve odd/refs >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "model.safetensors: Permission denied" "$tmp/err" &&
        ok "an unreadable blob: resolve says 'Permission denied'" ||
        notok "unreadable blob: Permission denied" "exit $rc: $(cat "$tmp/err")"
    mkdir -p "$P/priv" && cp $M/weights.safetensors "$P/priv/w.safetensors" && chmod 700 "$P/priv"
    nobody "$bin" models resolve "$P/priv/w.safetensors" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 1 ] && grep -q "w.safetensors: Permission denied" "$tmp/err" &&
        ok "a path in a folder another user may not search: 'Permission denied' (was 'no such file')" ||
        notok "unsearchable path: Permission denied" "exit $rc: $(cat "$tmp/err")"
    chmod 700 "$tmp"
else
    ok "# skip permission checks: not root or no setpriv"
fi
expect_resolve "ORG/NAME/ (a trailing slash) is the repo" "$O/snapshots/$rev1/model.safetensors" \
    HF_HUB_CACHE=$hub -- odd/refs/
expect_resolve "hf://ORG/NAME/ too" "$O/snapshots/$rev1/model.safetensors" HF_HUB_CACHE=$hub -- hf://odd/refs/
for args in "models resolve" "run $tmp/never.db --manifest $tmp/manifest.txt --model" \
            "generate $M/image.png -o $tmp/never.json --model"; do
    "$bin" $args "" >"$tmp/out" 2>"$tmp/err"
    rc=$?
    [ $rc -eq 2 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && [ ! -e "$tmp/never.db" ] &&
        ok "${args%% *} with an empty model name: usage error, exit 2 (was 1)" ||
        notok "${args%% *} with an empty model name: exit 2" "exit $rc: $(cat "$tmp/err")"
done
# a folder named like the built-in config in the folder run starts in: the
# built-in (was: realpath'd into runs.config, then 'read error')
mkdir -p "$tmp/cwd/micro"
root=$PWD
(cd "$tmp/cwd" && "$bin" run "$tmp/db2.sqlite" --manifest "$tmp/manifest.txt" --model "$root/$M/weights.safetensors" \
    --config micro --points-per-side 4 --quiet) >"$tmp/log" 2>&1
rc=$?
got=$("$bin" sql "$tmp/db2.sqlite" "SELECT config FROM runs" 2>&1)
[ $rc -eq 0 ] && [ "$got" = micro ] && ok "run --config micro beside a folder named micro: the built-in, stored as a name" ||
    notok "run beside a folder named like the config" "exit $rc, config '$got': $(tail -n 3 "$tmp/log")"
# resume without --model when the stored file is gone: the message names the model
cp $M/weights.safetensors "$tmp/gone.safetensors"
"$bin" run "$tmp/db3.sqlite" --manifest "$tmp/manifest.txt" --model "$tmp/gone.safetensors" --config micro \
    --points-per-side 4 --quiet >"$tmp/log" 2>&1
rm -f "$tmp/gone.safetensors"
"$bin" run "$tmp/db3.sqlite" --manifest "$tmp/manifest.txt" --quiet >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc -eq 1 ] && [ "$(wc -l <"$tmp/err")" -eq 1 ] && grep -q "the model of the database's last run, '$tmp/gone.safetensors'; give --model" "$tmp/err" &&
    ok "resume without --model, the model file gone: one line naming the last run's model" ||
    notok "resume with the model gone" "exit $rc: $(cat "$tmp/err")"

echo "RESULT $passed $failed"
[ "$failed" -eq 0 ]
