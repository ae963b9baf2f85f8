#!/bin/bash
# A single run against a 5-fold ensemble under the same total budget (issue 28), on the real pet
# sample with a held-out test split made here (every fifth photo of trainval.txt: 60 test photos, 240
# pooled). Usage: benchmarks/folds_vs_single.sh OUT SHORT LONG  (budgets such as 2m 10m).
# Scores: per-image Dice on the test split at original resolution (segkit evaluate --split test),
# the single runs with their own choices, the ensembles with their out-of-fold ones.
set -euo pipefail
OUT=${1:?OUT}; SHORT=${2:-2m}; LONG=${3:-10m}
PETS=${PETS:-../shared/datasets/oxford-iiit-pet-mini}
DATA=$OUT/pets-split
mkdir -p "$DATA/annotations"
ln -sfn "$(realpath "$PETS/images")" "$DATA/images"
ln -sfn "$(realpath "$PETS/annotations/trimaps")" "$DATA/annotations/trimaps"
awk 'NR % 5 == 0' "$PETS/annotations/trainval.txt" > "$DATA/annotations/test.txt"
awk 'NR % 5 != 0' "$PETS/annotations/trainval.txt" > "$DATA/annotations/trainval.txt"
COMMON="--recipe auto --dataset oxford_pet --data-path $DATA"
score() {  # the newest run or parent in $1, scored on the test split
  local run; run=$(ls -td "$1"/*/ | head -1)
  segkit evaluate "$run" --split test --quiet > /dev/null 2>&1
  python -c "import json,sys; s=json.load(open(sys.argv[1]+'/eval-test/summary.json')); print(round(s['original_resolution']['dice_per_image'],4))" "$run"
}
for budget in $SHORT $LONG; do
  seeds="0"; [ "$budget" = "$SHORT" ] && seeds="0 1 2"
  for seed in $seeds; do
    start=$(date +%s); segkit run $COMMON --quiet --time-budget "$budget" --seed "$seed" --out "$OUT/single-$budget-$seed" > /dev/null
    echo "single $budget seed $seed: test Dice $(score "$OUT/single-$budget-$seed") ($(( $(date +%s) - start )) s)"
  done
  start=$(date +%s); segkit run $COMMON --time-budget "$budget" --folds 5 --out "$OUT/folds-$budget" > "$OUT/folds-$budget.log"
  echo "5 folds $budget: test Dice $(score "$OUT/folds-$budget") ($(( $(date +%s) - start )) s)"
done
