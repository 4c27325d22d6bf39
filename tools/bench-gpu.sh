#!/usr/bin/env bash
# The GPU timings of the Training issue: ms/step, bf16 mixed precision, BlockwiseAdamW and AdamMini, for
# (a) 8 layers, width 512, 8 heads, seq 512, batch 32 and (b) gpt2-small, seq 1024, batch 16.
# Usage inside the unpacked bundle: ./bench-gpu.sh [cuda|cpu] [steps]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
device="${1:-cuda}"; steps="${2:-30}"
data="${BLR_BENCH_DATA:-/tmp/blr-bench-data}"
[ -f "$data/manifest.json" ] || "$here/run.sh" prepare --builtin gutenberg --out "$data"
run() {  # name, optimizer, blr train options...
  local name="$1" optimizer="$2"; shift 2
  "$here/run.sh" train --data "$data" --optimizer "$optimizer" --steps "$steps" --eval-every 0 --eval-windows 1 \
    --precision bf16-mixed --device "$device" --out "/tmp/blr-bench-runs/$name-$optimizer" "$@" > /dev/null
  python3 - "$name" "$optimizer" "/tmp/blr-bench-runs/$name-$optimizer/result.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[3]))
print(f"{sys.argv[1]:>28} {sys.argv[2]:>16}: {r['millisecondsPerStep']:8.1f} ms/step, {r['tokensPerSecond']:12,.0f} tokens/s")
PY
}
for optimizer in blockwise-adamw adam-mini; do
  run "8L-512w-seq512-b32" "$optimizer" --model gpt2-tiny --set layers=8 --set width=512 --set heads=8 --set context=512 --seq-len 512 --batch-size 32
  run "gpt2-small-seq1024-b16" "$optimizer" --model gpt2-small --seq-len 1024 --batch-size 16
done
