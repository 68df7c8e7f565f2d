#!/usr/bin/env bash
# Train and test TF-CLIP (ViT-B/16 and the CNN variant on RN50), its baseline CLIP-ReID (text bank +
# TAP, paper Table 2's B1) and torchreid's built-in baselines on every video dataset found under a
# root, then write one markdown + CSV table (mAP / R1 / R5 / R10 / R20 / train time / test time).
#
#   tools/benchmark_all.sh --root /data/reid-data [--out log/benchmark] [--models "resnet50 osnet_x1_0"]
#   tools/benchmark_all.sh --quick [--datasets "mars ilidsvid lsvid"] [--out DIR]
#
# --quick generates small synthetic datasets (tools/make_synthetic_dataset.py), trains a tiny
# randomly initialised TF-CLIP and CLIP-ReID (after a few stage-1 epochs) and randomly initialised
# baselines for a few epochs on CPU: a smoke run of the whole comparison, not a measurement of the
# methods. For comparability all rows use torchreid's gallery (query not added to the gallery),
# since torchreid's engines cannot do otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."

ROOT="reid-data"; OUT="log/benchmark"; QUICK=0; DATASETS=""; MODELS="resnet50 osnet_x1_0"
PY="${PYTHON:-python}"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) ROOT="$2"; shift 2 ;;
    --out) OUT="$2"; shift 2 ;;
    --quick) QUICK=1; shift ;;
    --datasets) DATASETS="$2"; shift 2 ;;
    --models) MODELS="$2"; shift 2 ;;
    -h|--help) sed -n 2,13p "$0"; exit 0 ;;
    *) echo "unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
done
mkdir -p "$OUT"

declare -A DIRS=([mars]=mars [ilidsvid]=ilids-vid [prid2011]=prid2011 [dukemtmcvidreid]=dukemtmc-vidreid [lsvid]=lsvid)
if [[ $QUICK == 1 ]]; then
  [[ -z "$DATASETS" ]] && DATASETS="mars ilidsvid lsvid"
  [[ "$ROOT" == "reid-data" ]] && ROOT="$OUT/synthetic-data"
  for d in $DATASETS; do
    "$PY" tools/make_synthetic_dataset.py --format "$d" --root "$ROOT"
  done
else
  if [[ -z "$DATASETS" ]]; then
    for d in mars lsvid ilidsvid prid2011 dukemtmcvidreid; do
      [[ -d "$ROOT/${DIRS[$d]}" ]] && DATASETS="$DATASETS $d"
    done
  fi
  if [[ -z "${DATASETS// /}" ]]; then
    echo "no dataset folder found under $ROOT (looked for: ${DIRS[*]}); use --quick for synthetic data" >&2
    exit 1
  fi
fi
echo "datasets: $DATASETS | models: tfclip clipreid tfclip_rn50 $MODELS | out: $OUT"

for d in $DATASETS; do
  if [[ $QUICK == 1 ]]; then
    "$PY" tools/train.py --config-file configs/demo.yaml --root "$ROOT" -s "$d" -t "$d" \
      --save-dir "$OUT/$d/tfclip" data.synthetic False data.gallery_includes_query no \
      train.max_epoch 3 test.eval_before_train False
  else
    cfg="configs/tfclip_vitb16_$d.yaml"; [[ -f "$cfg" ]] || cfg="configs/tfclip_vitb16_mars.yaml"
    "$PY" tools/train.py --config-file "$cfg" --root "$ROOT" -s "$d" -t "$d" \
      --save-dir "$OUT/$d/tfclip" data.gallery_includes_query no data.all_splits False
  fi
  # CLIP-ReID applied to video: the same settings with the text bank and TAP (paper Table 2, B1)
  if [[ $QUICK == 1 ]]; then
    "$PY" tools/train.py --config-file configs/demo.yaml --arch clipreid_tiny --root "$ROOT" \
      -s "$d" -t "$d" --save-dir "$OUT/$d/clipreid" data.synthetic False \
      data.gallery_includes_query no train.max_epoch 3 test.eval_before_train False \
      stage1.max_epoch 5 stage1.warmup_epochs 1
  else
    ccfg="configs/clipreid_vitb16_$d.yaml"; [[ -f "$ccfg" ]] || ccfg="configs/clipreid_vitb16_mars.yaml"
    "$PY" tools/train.py --config-file "$ccfg" --root "$ROOT" -s "$d" -t "$d" \
      --save-dir "$OUT/$d/clipreid" data.gallery_includes_query no data.all_splits False
  fi
  # the supplement's CNN TF-CLIP (CLIP RN50, last stride 1)
  if [[ $QUICK == 1 ]]; then
    "$PY" tools/train.py --config-file configs/demo_rn50.yaml --root "$ROOT" -s "$d" -t "$d" \
      --save-dir "$OUT/$d/tfclip_rn50" data.synthetic False data.gallery_includes_query no \
      train.max_epoch 3 test.eval_before_train False
  else
    "$PY" tools/train.py --config-file configs/tfclip_rn50_mars.yaml --root "$ROOT" -s "$d" -t "$d" \
      --save-dir "$OUT/$d/tfclip_rn50" data.gallery_includes_query no data.all_splits False
  fi
  for m in $MODELS; do
    if [[ $QUICK == 1 ]]; then
      "$PY" tools/train_baseline.py --arch "$m" --sources "$d" --root "$ROOT" --save-dir "$OUT/$d/$m" \
        --no-pretrained --max-epoch 1 --height 128 --width 64 --seq-len 4 --batch-size 8 \
        --test-batch-size 8 --workers 0
    else
      "$PY" tools/train_baseline.py --arch "$m" --sources "$d" --root "$ROOT" --save-dir "$OUT/$d/$m"
    fi
  done
done
"$PY" tools/benchmark_table.py "$OUT" --out "$OUT/benchmark"
