#!/usr/bin/env bash
# The GPU device check: one run on a machine with one GPU, PyTorch 2.11, no MPI and no .NET (from the unpacked
# bundle of `dotnet fsi build.fsx bundle`), writing one Markdown report. The test command runs it with
# `--device cpu --quick` so it cannot rot.
#
#   ./gpu-check.sh [--device cuda|cpu] [--quick] [--out report.md] [--fixtures DIR]
#
# BLR_COMMAND overrides how blr is started (default: run.sh beside this script). Sections:
#   1 doctor; 2 fixture logits (fp32, tf32, bf16-mixed) against transformers and the optimizer golden
#   trajectories (AdamW, Adam-mini, Lion, Muon within 1e-5; Muon with bf16 Newton-Schulz on CUDA within 2e-4); 3 gpt2-tiny AdamW in bf16-mixed
#   against the CPU fp32 run, and a resume with and without --deterministic; 4 ms/step of blr and of PyTorch eager on the same shapes, side by side;
#   5 device memory in use (cudaMemGetInfo) against inspect; 6 the collectives at world 1 (NCCL on CUDA, MPI on the CPU when present).
set -uo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
device=cuda; quick=0; out="$PWD/gpu-check.md"; fixtures="${BLR_FIXTURES:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --device) device="$2"; shift 2 ;;
    --quick) quick=1; shift ;;
    --out) out="$2"; shift 2 ;;
    --fixtures) fixtures="$2"; shift 2 ;;
    *) echo "gpu-check.sh: unknown argument $1 (see the header of this script)" >&2; exit 2 ;;
  esac
done
if [ -z "$fixtures" ]; then
  for candidate in "$here/tests/data" "$here/../tests/data" "$here/../main/tests/data"; do
    [ -f "$candidate/hf-gpt2-tiny/expected.safetensors" ] && fixtures="$candidate" && break
  done
fi
read -r -a blr <<< "${BLR_COMMAND:-$here/run.sh}"
work="$(mktemp -d /tmp/blr-gpu-check-XXXXXX)"
failures=0
if [ "$quick" = 1 ]; then   # a few steps of a small model: the check's code paths, not its numbers
  train_steps=10; bench_steps=3; model=(--model gpt2-tiny --set layers=2 --set width=64 --set heads=2 --batch-size 4 --seq-len 64)
else
  train_steps=200; bench_steps=30; model=(--model gpt2-tiny --batch-size 8 --seq-len 128)
fi

report() { printf '%s\n' "$@" >> "$out"; }
result() { # name, exit code
  if [ "$2" = 0 ]; then report "" "**$1: PASS**"; else report "" "**$1: FAIL (exit $2)**"; failures=$((failures + 1)); fi
}
json() { python3 -c "import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])" "$1" "$2"; }

: > "$out"
report "# BlockwiseLR device check" "" "device \`$device\`$( [ "$quick" = 1 ] && echo ', quick mode') on $(hostname), $(date -u +%Y-%m-%dT%H:%MZ)."

report "" "## 1. doctor" "" '```'
"${blr[@]}" doctor --device "$device" >> "$out" 2>&1; code=$?
report '```'; result doctor $code

report "" "## 2. Fixture logits against transformers, optimizer trajectories against PyTorch, Adam-mini 1.1.1, lion.py and Moonlight's Muon" ""
if [ -n "$fixtures" ]; then
  "${blr[@]}" check-fixtures --fixtures "$fixtures" --device "$device" >> "$out" 2>&1; code=$?
  result "fixture logits and optimizer trajectories" $code
else
  report "No fixtures found (give --fixtures DIR, the source tree's tests/data)."; failures=$((failures + 1))
fi

report "" "## 3. ${model[*]}, AdamW, $train_steps steps: $device bf16-mixed against CPU fp32, and a resume" ""
data="$work/data"
"${blr[@]}" prepare --builtin gutenberg --out "$data" > "$work/prepare.log" 2>&1 || { report "prepare failed:" '```' "$(tail -3 "$work/prepare.log")" '```'; failures=$((failures + 1)); }
common=(--data "$data" "${model[@]}" --optimizer adamw --steps "$train_steps" --eval-every 0 --eval-windows 16)
"${blr[@]}" train "${common[@]}" --device cpu --precision fp32 --out "$work/cpu-fp32" > "$work/cpu.log" 2>&1; c1=$?
"${blr[@]}" train "${common[@]}" --device "$device" --precision bf16-mixed --out "$work/dev-bf16" > "$work/dev.log" 2>&1; c2=$?
half=$((train_steps / 2))
resumed() { # folder, extra flags...: train to the end with a checkpoint at half, then redo the second half from it
  local dir="$1"; shift
  "${blr[@]}" train "${common[@]}" "$@" --device "$device" --precision bf16-mixed --checkpoint-every "$half" --out "$dir" > "$dir.log" 2>&1 \
    && cp "$dir/result.json" "$dir/uninterrupted.json" \
    && rm -rf "$dir/checkpoints/step_$(printf '%07d' "$train_steps")" \
    && printf 'step_%07d' "$half" > "$dir/checkpoints/latest" \
    && "${blr[@]}" train "${common[@]}" "$@" --device "$device" --precision bf16-mixed --resume latest --out "$dir" >> "$dir.log" 2>&1
}
resumed "$work/resume"; c3=$?
resumed "$work/resume-det" --deterministic; c4=$?
if [ $c1 = 0 ] && [ $c2 = 0 ] && [ $c3 = 0 ] && [ $c4 = 0 ]; then
  cpu=$(json "$work/cpu-fp32/result.json" finalValLoss); dev=$(json "$work/dev-bf16/result.json" finalValLoss)
  whole=$(json "$work/resume/uninterrupted.json" finalValLoss); res=$(json "$work/resume/result.json" finalValLoss)
  dwhole=$(json "$work/resume-det/uninterrupted.json" finalValLoss); dres=$(json "$work/resume-det/result.json" finalValLoss)
  report "| run | final val loss |" "|---|---|" "| CPU fp32 | $cpu |" "| $device bf16-mixed | $dev |" \
    "| $device bf16-mixed, uninterrupted / resumed at step $half | $whole / $res |" \
    "| $device bf16-mixed --deterministic, uninterrupted / resumed at step $half | $dwhole / $dres |"
  python3 -c "import sys; a,b,w,r,dw,dr=map(float,sys.argv[1:]); sys.exit(0 if abs(a-b)<=0.05 and abs(w-r)<=1e-3 and dw==dr else 1)" "$cpu" "$dev" "$whole" "$res" "$dwhole" "$dres"
  result "bf16-mixed within 0.05 of CPU fp32; a resume within 1e-3 of the uninterrupted run, and equal to it with --deterministic" $?
else
  report "a run failed (cpu $c1, device $c2, resume $c3, deterministic resume $c4); the last lines of each log:" '```' \
    "$(for log in cpu dev resume resume-det; do echo "== $log"; tail -3 "$work/$log.log" 2>/dev/null; done)" '```'; failures=$((failures + 1))
fi

report "" "## 4. ms/step, bf16-mixed: blr and PyTorch eager (bf16 autocast, fused AdamW) in the same run" ""
if [ "$quick" = 1 ]; then
  shapes=("tiny-2L-64w-seq64-b4|--model gpt2-tiny --set layers=2 --set width=64 --set heads=2 --seq-len 64 --batch-size 4")
else
  shapes=("8L-512w-seq512-b32|--model gpt2-tiny --set layers=8 --set width=512 --set heads=8 --set context=512 --seq-len 512 --batch-size 32"
          "gpt2-small-seq1024-b16|--model gpt2-small --seq-len 1024 --batch-size 16")
fi
report "| shape | optimizer | blr ms/step | tokens/s |" "|---|---|---|---|"
for entry in "${shapes[@]}"; do
  name="${entry%%|*}"; read -r -a flags <<< "${entry#*|}"
  for optimizer in blockwise-adamw adam-mini; do
    run="$work/bench-$name-$optimizer"
    if "${blr[@]}" train --data "$data" "${flags[@]}" --optimizer "$optimizer" --steps "$bench_steps" --eval-every 0 --eval-windows 1 \
         --precision bf16-mixed --device "$device" --out "$run" > "$run.log" 2>&1; then
      report "| $name | $optimizer | $(json "$run/result.json" millisecondsPerStep) | $(json "$run/result.json" tokensPerSecond) |"
    else
      report "| $name | $optimizer | failed: $(tail -1 "$run.log") | |"; failures=$((failures + 1))
    fi
  done
done
if python3 -c "import torch" 2> /dev/null; then
  report "" "PyTorch eager, the same shapes (full mode; the quick mode times the first one only on its own model):" "" '```'
  if [ "$quick" = 1 ]; then echo "(quick mode: PyTorch shapes are the full ones; skipped)" >> "$out"
  else python3 "$here/torch_eager_bench.py" "$bench_steps" "$device" >> "$out" 2>&1 || failures=$((failures + 1)); fi
  report '```'
else
  report "" "PyTorch is not installed here: no eager numbers to compare with."
fi

report "" "## 5. Peak memory" ""
if [ "$device" = cpu ]; then
  report "On the CPU there is no device memory to read (metrics.jsonl has device_mem_mib on CUDA only)."
else
  report "Device memory in use (cudaMemGetInfo: the whole process, with the caching allocator's reserve), the largest per-step reading, against the estimate of blr inspect:" ""
  for optimizer in blockwise-adamw adam-mini; do
    run="$work/bench-gpt2-small-seq1024-b16-$optimizer"
    estimate=$("${blr[@]}" inspect --model gpt2-small --batch-size 16 --seq-len 1024 --optimizer "$optimizer" --precision bf16-mixed --device cuda 2>&1 \
      | grep -E "^  total" | tail -1 | grep -oE "[0-9.]+ MiB" | grep -oE "[0-9.]+")
    if [ -f "$run/metrics.jsonl" ] && [ -n "$estimate" ]; then
      python3 - "$run/metrics.jsonl" "$optimizer" "$estimate" >> "$out" <<'PY'
import json, sys
peak = max(json.loads(l).get("device_mem_mib", float("nan")) for l in open(sys.argv[1]))
estimate = float(sys.argv[3])
off = (estimate - peak) / peak
print(f"- gpt2-small, seq 1024, batch 16, {sys.argv[2]}: measured {peak:,.0f} MiB, inspect {estimate:,.0f} MiB ({off:+.1%}; bound 15%)")
sys.exit(0 if abs(off) <= 0.15 else 1)
PY
      result "inspect within 15% of the measured memory ($optimizer)" $?
    else
      report "- $optimizer: no measurement (the gpt2-small run of section 4 failed) or no estimate"; failures=$((failures + 1))
    fi
  done
fi

report "" "## 6. Collectives at world 1 through the data-parallel code" ""
backend=$([ "$device" = cpu ] && echo mpi || echo nccl)
if [ "$backend" = mpi ] && ! command -v mpirun > /dev/null; then
  report "No MPI on this machine: skipped (on CUDA this section uses NCCL, which needs no MPI)."
else
  tiny=(--data "$data" --model gpt2-tiny --set layers=2 --set width=64 --set heads=2 --steps 5 --batch-size 4 --seq-len 32 --eval-every 0 --eval-windows 2 --device "$device")
  "${blr[@]}" train "${tiny[@]}" --out "$work/plain" > /dev/null 2>&1; c1=$?
  BLR_PROCESS_GROUP=$backend "${blr[@]}" train "${tiny[@]}" --out "$work/group" > "$work/group.log" 2>&1; c2=$?
  if [ $c1 = 0 ] && [ $c2 = 0 ]; then
    python3 - "$work/plain/metrics.jsonl" "$work/group/metrics.jsonl" >> "$out" <<'PY'
import json, sys
a = [json.loads(l) for l in open(sys.argv[1])]
b = [json.loads(l) for l in open(sys.argv[2])]
same = [x["loss"] == y["loss"] for x, y in zip(a, b)]
print(f"{len(b)} steps through the {('MPI' if 'comm_ms' in b[0] else '?')} group: losses equal to the plain run's at {sum(same)} of {len(same)} steps; comm_ms {[round(y.get('comm_ms', float('nan')), 2) for y in b]}")
sys.exit(0 if all(same) and all("comm_ms" in y for y in b) else 1)
PY
    result "$backend at world 1 equals the plain run" $?
  else
    report '```' "$(tail -3 "$work/group.log")" '```'; result "$backend at world 1" 1
  fi
fi

report "" "---" "" "$failures section(s) failed."
rm -rf "$work"
echo "gpu-check: report in $out ($failures failed)"
[ "$failures" = 0 ]
