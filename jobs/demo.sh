#!/usr/bin/env bash
# demo.sh: set up, build and run a real sam2amg job end to end on a fresh
# Debian machine: install the packages, build, process the sample photos
# into demo.db, show the status, answer a counting query, export SA-1B JSON
# and PNG overlays. The bundled weights are the `micro` test model (random
# weights made by the official code): the masks are not meaningful
# segmentations; pass MODEL=sam2.1_hiera_large.pt (and CONFIG=large, or
# leave CONFIG empty to guess) for a real checkpoint.
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${MODEL:-tests/fixtures/micro/weights.safetensors}
CONFIG=${CONFIG-micro}
IMAGES=${IMAGES:-tests/fixtures/photos}
DB=${DB:-demo.db}
bash tests/setup.sh
make -j"$(nproc)" build/sam2amg
cfg=(); [ -n "$CONFIG" ] && cfg=(--config "$CONFIG")
# thresholds lowered so the random-weight demo model keeps some masks
build/sam2amg run "$DB" --manifest "$IMAGES" --model "$MODEL" "${cfg[@]}" \
    --points-per-side 16 --pred-iou-thresh 0.3 --stability-score-thresh 0.3 \
    --box-nms-thresh 0.95
build/sam2amg status "$DB"
echo "-- objects over 1000 pixels per image:"
build/sam2amg sql "$DB" --header "SELECT path, masks_1000px AS objects FROM image_summary ORDER BY path"
build/sam2amg export "$DB" --format sa1b demo-sa1b
build/sam2amg export "$DB" --format png demo-png
echo "-- SA-1B JSON in demo-sa1b/, overlays in demo-png/"
