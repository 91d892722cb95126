#!/usr/bin/env bash
# Accuracy cost of INT8 and bf16 on the demo models, through the configs' own
# metrics (the table in docs/deploy.md):
#
#   python tools/demo.py det && python tools/demo.py seg   # the trained demos
#   bash .dev_scripts/int8_accuracy.sh [OUT_DIR]           # default work_dirs/int8_accuracy
#
# For each demo: tools/test.py (PyTorch), then the exported part (the
# detector's backbone + FPN, the whole segmentor) in onnxruntime FP32, INT8
# (every node, default limits), INT8 with the costliest nodes kept in float
# (--keep-float auto), OpenVINO FP32, bf16 (where the CPU has it) and INT8
# (the QDQ file, and one with only the convolutions quantized), each by
# tools/deploy/test_onnx.py. Prints a Markdown table.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-work_dirs/int8_accuracy}
mkdir -p "$out"
PY=${PYTHON:-python}

metrics() {   # FILE.json KEYS...: the values, space-separated
    "$PY" - "$@" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
print(' | '.join(f'{d[k]:.3f}' if d[k] < 1 else f'{d[k]:.2f}'
                 for k in sys.argv[2:]))
EOF
}

row() {   # TASK LABEL ONNX [test_onnx.py options]
    local task=$1 label=$2 onnx=$3 name
    shift 3
    name=$(echo "$label" | tr -c 'a-zA-Z0-9\n' '_')
    "$PY" tools/deploy/test_onnx.py "$config" "$ckpt" "$onnx" "$@" \
        --work-dir "$out/wd" --out "$out/$task-$name.json" \
        > "$out/$task-$name.log" 2>&1
    echo "| $task | $label | $(metrics "$out/$task-$name.json" $keys) |"
}

for task in det seg; do
    if [ "$task" = det ]; then
        config=configs/det/repvit_m0_6_maskrcnn_demo.py
        ckpt=work_dirs/demo_det/epoch_7.pth
        keys="coco/bbox_mAP coco/bbox_mAP_50 coco/segm_mAP coco/segm_mAP_50"
        echo "| task | form | box AP | box AP50 | mask AP | mask AP50 |"
    else
        config=configs/seg/repvit_m0_6_fpn_demo.py
        ckpt=work_dirs/demo_seg/iter_200.pth
        keys="mIoU aAcc mAcc"
        echo "| task | form | mIoU | aAcc | mAcc |"
    fi
    echo "|---|---|$(for _ in $keys; do printf -- '---|'; done)"
    [ -f "$ckpt" ] || { echo "$ckpt missing: python tools/demo.py $task" >&2; exit 1; }
    "$PY" tools/test.py "$config" "$ckpt" --work-dir "$out/wd-$task" \
        > "$out/$task-pytorch.log" 2>&1
    echo "| $task | PyTorch (tools/test.py) | $(metrics "$(ls -t "$out/wd-$task"/*/*.json | head -1)" $keys) |"
    fp32=$out/$task-fp32.onnx int8=$out/$task-int8.onnx auto=$out/$task-int8-auto.onnx
    conv=$out/$task-int8-conv.onnx
    "$PY" tools/deploy/export_onnx.py "$config" "$ckpt" "$fp32" --shape 256 256 > "$out/$task-export.log" 2>&1
    "$PY" tools/deploy/quantize_onnx.py "$config" "$fp32" "$int8" > "$out/$task-quantize.log" 2>&1
    "$PY" tools/deploy/quantize_onnx.py "$config" "$fp32" "$auto" --keep-float auto \
        --max-error 0.1 --max-keep 16 > "$out/$task-quantize-auto.log" 2>&1
    "$PY" tools/deploy/quantize_onnx.py "$config" "$fp32" "$conv" --op-types Conv \
        > "$out/$task-quantize-conv.log" 2>&1
    row $task 'onnxruntime FP32' "$fp32"
    row $task 'onnxruntime INT8' "$int8"
    row $task "onnxruntime INT8, $(grep -c '^kept in float' "$out/$task-quantize-auto.log" || true) nodes kept in float" "$auto"
    row $task 'OpenVINO FP32' "$fp32" --backend openvino
    if "$PY" -c "from mmrepvit.apis import OnnxRunner; OnnxRunner('$fp32', 'openvino', 'bf16')" 2>/dev/null; then
        row $task 'OpenVINO bf16' "$fp32" --backend openvino --precision bf16
    fi
    row $task 'OpenVINO INT8' "$int8" --backend openvino
    row $task 'OpenVINO INT8, convolutions only' "$conv" --backend openvino
    echo
    for log in "$out/$task-quantize.log" "$out/$task-quantize-auto.log" \
            "$out/$task-quantize-conv.log"; do
        grep -E 'relative error|label map|kept in float' "$log" | sed 's/^/    /'
        echo
    done
done
