# seeds.sh: fuzz_seeds TARGET [replay]: the fixture files that seed a fuzz
# target, one path per line (sourced by tests/fuzz/run.sh and
# tests/test_fuzz_corpus.sh). With "replay", also the big fixtures that are
# too slow to mutate but cheap to run once (the micro model's checkpoints,
# the amg.json records). tests/fuzz/corpus/TARGET/ (small seeds and every
# regression input) comes on top of these.
fuzz_seeds() {
    local t=$1 replay=${2:-}
    local F=tests/fixtures
    case $t in
    fuzz_pt)
        ls $F/pt-variants/*.pt
        [ -n "$replay" ] && ls $F/micro/weights.pt ;;
    fuzz_safetensors)
        ls $F/pt-variants/expected.safetensors
        [ -n "$replay" ] && ls $F/micro/weights.safetensors $F/amg-upsample/upsample.safetensors ;;
    fuzz_json)
        ls $F/*/meta.json
        [ -n "$replay" ] && ls $F/*/amg.json ;;
    fuzz_config)
        ls $F/*/meta.json ;;
    fuzz_image)
        ls $F/images/*.jpg $F/images/*.png $F/images/*.gif $F/images/*.webp $F/images/*.tif \
           $F/images/*.bmp $F/images/bad/* 2>/dev/null
        [ -n "$replay" ] && ls $F/photos/*.png $F/photos/*.tif ;;
    esac
    true
}
