#!/usr/bin/env bash
# The GPU machine's side, run from the repository root there (python3 = the image's, with torch):
#   bash scripts/gpu/session.sh probes      set up, probe launch layouts (probe.py), trainbot stop test (validate.py)
#   bash scripts/gpu/session.sh full        set up, then in the background: validate.py (the console runs the default
#                                           job to `succeeded` and exports it), compare.py (exact then fast, full
#                                           jobs, one after the other); follows it ~9 minutes
#   bash scripts/gpu/session.sh pair        the same in the other order: compare.py (exact, then fast on a cold
#                                           Triton cache), then validate.py (the console's default job, warm)
#   bash scripts/gpu/session.sh attn        set up, then in the background: the default with cuDNN's attention (cold),
#                                           the default now, the literal job, the old default again (warm); follow
#   bash scripts/gpu/session.sh profile     torch.profiler over steps 12-14 of the default, step 3 of the literal job
#   bash scripts/gpu/session.sh wide        probes: 16 x 1 without checkpointing, 8 x 2, 16 x 1 compiled
#   bash scripts/gpu/session.sh warm        set up, then in the background: the default now (padding-free, warm start)
#                                           on a cold Triton cache, the literal job, the default now again, then one
#                                           lever at a time: padded + warm, padded afresh (the default as it was),
#                                           padding-free afresh; follow
#   bash scripts/gpu/session.sh warm2       set up; the warm start alone: warm, afresh, warm again (saved run by run)
#   bash scripts/gpu/session.sh final       set up, the write probe, then in the background: the default (warm, Triton
#                                           cold), its checkpoint exported four ways (GPU warm, GPU afresh, CPU, and
#                                           `swift export` on the CPU as before), the literal job, the default (warm),
#                                           trainbot's console: the default job to `succeeded` and its export; follow
#   bash scripts/gpu/session.sh final2      set up; Triton warmed (5 steps); trainbot's console: the default job to
#                                           `succeeded` once the warm process is ready, and its export; that
#                                           checkpoint exported on the CPU, then on the GPU (warm) against it
#   bash scripts/gpu/session.sh final3      set up; the default job (compare.py, warm), its checkpoint exported as in final2
#   bash scripts/gpu/session.sh h100        issue 31 in one lease (any card; named for the H100): set up; then in the
#                                           background: trainbot's console (the bot compiles Triton's kernels on
#                                           GPU 0 while its warm process imports swift; then the default job to
#                                           `succeeded`), the default (compare.py, warm, Triton filled by the bot),
#                                           the default to step 5 on an empty Triton cache (a truly cold machine),
#                                           the literal flags; follow (~16 minutes in all: `follow` once more)
#   bash scripts/gpu/session.sh h100s       the same in one call (~9 minutes), the literal flags only to step 12
#   bash scripts/gpu/session.sh try         set up; the default job, then `try` of its model against `swift infer` by
#                                           hand on the same checkpoint (scripts/gpu/try_check.py, issue 30)
#   bash scripts/gpu/session.sh follow      keep following that background run (a later call, same machine)
# Needs, carried from the machine where pip works: .whl/ (wheels, see docs/gpu.md) and .gpu/ (make_assets.py);
# name both in the carry of every call, the `follow` ones too.
# Results go to $OUT (what the device tool brings back) when it is set, else to /tmp/w/results.
# A dry run of a mode's runs on the CPU (no wheels, no 7B; $W/trainbot.toml written beforehand, pointing at a small
# model): W=/tmp/dry SKIP_SETUP=1 GPU=cpu PATH=$PWD/.venv/bin:$PATH bash scripts/gpu/session.sh h100
set -u
REPO=$PWD
W=${W:-/tmp/w}
GPU=${GPU:-0}
RES=${OUT:-$W/results}
mkdir -p $W $RES
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
export MODELSCOPE_CACHE=$W/cache/ms HF_HOME=$W/cache/hf MPLCONFIGDIR=$W/cache/mpl
export PYTHONPATH=$REPO:/tmp/site PATH=/tmp/site/bin:$PATH

setup() {  # once per machine: wheels (+ byte-compiled, so no run pays for it), the 7B model, the config
  [ -n "${SKIP_SETUP:-}" ] && return
  local t=$(date +%s)
  if [ ! -f /tmp/site/.done ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      || { echo "wheel install failed"; exit 1; }
    (python3 -m compileall -q -j 0 /tmp/site >/dev/null 2>&1; touch /tmp/site/.compiled) &
    touch /tmp/site/.done
  fi
  if [ ! -f $W/qwen7b/.done ]; then
    python3 scripts/gpu/build_model.py 7b $W/qwen7b cuda .gpu/tok && touch $W/qwen7b/.done || { echo "model build failed"; exit 1; }
  fi
  # the data outside the repository: a later call that does not carry .gpu/ removes it there (seen 2026-11-28)
  rm -rf $W/data && cp -r .gpu/data $W/data
  local D=$W/data
  cat > $W/trainbot.toml <<EOF
[paths]
data_dir = "$W/tb"
output_root = "$W/output"
log_dir = "$W/logs"
[swift]
bin = "/tmp/site/bin/swift"
offline = true
[llm]
model = "$W/qwen7b"
dataset = ["$D/alpaca_zh.jsonl#500", "$D/alpaca_en.jsonl#500", "$D/self-cognition#500"]
model_type = "qwen2"
template = "qwen2_5"
EOF
  while [ ! -f /tmp/site/.compiled ]; do sleep 1; done
  echo "setup took $(( $(date +%s) - t )) s"
}

facts() {
  nvidia-smi; nproc; free -g | head -2; uname -r
  python3 -c "import sys, torch, transformers, triton, peft, swift, liger_kernel; print(sys.version.split()[0], 'torch', torch.__version__, 'transformers', transformers.__version__, 'triton', triton.__version__, 'peft', peft.__version__, 'swift', swift.__version__, 'liger', getattr(liger_kernel, '__version__', '?'))"
}

collect() {  # the small results into $RES (at most 8 files come back)
  cp $W/probes/probes.json $RES/ 2>/dev/null
  cp $W/cmp/report.txt $RES/ 2>/dev/null
  (cd $W && tar czf $RES/details.tgz $(ls -d probes*/*.json probes*/*.log probes*.txt cmp/*.json cmp/*.log cmp*.txt export.txt write_probe.txt \
    cmp/report.txt cmp.txt val*.txt val*/console.txt val*/validate.json logs tb/compile/compile.log 2>/dev/null))
  ls -la $RES
}

exports() {  # $1 exported on the CPU (trainbot's entry), then on GPU 0 (warm) and compared with it, value by value
  local E="python3 scripts/gpu/export.py --config $W/trainbot.toml --out $W/cmp --checkpoint $1"
  $E --device cpu --name cpu_entry > $W/export.txt 2>&1; sleep 3
  $E --device 0 --warm --name gpu_warm --against $W/cmp/merged-cpu_entry >> $W/export.txt 2>&1
  cat $W/export.txt; grep -h "trainbot\] [0-9]* shard\|Merge LoRA\|Saving merged" $W/cmp/*.log $W/logs/llm_export_*.log
  collect
}

case "${1:-}" in
  try)  # issue 30: the default job, then `try` of its model (the check, a question to the loaded model, a fresh
        # start) against `swift infer --adapters` by hand on the same checkpoint (scripts/gpu/try_check.py)
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    python3 scripts/gpu/try_check.py --config $W/trainbot.toml --work $W/try 2>&1 | tee $RES/try.txt | cut -c1-300
    cp $W/try/try.json $RES/ 2>/dev/null
    (cd $W && tar czf $RES/details.tgz try/*.log tb/*.db logs 2>/dev/null); ls -la $RES ;;
  probes)
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    python3 scripts/gpu/probe.py --config $W/trainbot.toml --out $W/probes --budget-s ${PROBE_BUDGET_S:-300}
    python3 scripts/gpu/validate.py --config $W/trainbot.toml --work $W/val1 --stop-at 10 > $W/val1.txt 2>&1
    tail -25 $W/val1.txt
    collect ;;
  full)
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    setsid nohup bash -c "python3 scripts/gpu/validate.py --config $W/trainbot.toml --work $W/val2 --export \
        --export-wait-s 300 > $W/val2.txt 2>&1;
      python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp > $W/cmp.txt 2>&1;
      touch $W/bg.done" > /dev/null 2>&1 &
    bash "$0" follow ;;
  pair)  # the other order: the literal job, then the default on a cold Triton cache, then trainbot's console
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    setsid nohup bash -c "python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp > $W/cmp.txt 2>&1;
      python3 scripts/gpu/validate.py --config $W/trainbot.toml --work $W/val2 > $W/val2.txt 2>&1;
      touch $W/bg.done" > /dev/null 2>&1 &
    bash "$0" follow ;;
  duo)  # 2 x H200 (issue 16): the literal job on GPU 1 while GPU 0 runs the default and its export; once the
        # literal job has ended, the default alone (was GPU 0 disturbed?) and the default on both GPUs
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp"
    setsid nohup bash -c "$C --gpu 1 --order exact > $W/cmp_exact.txt 2>&1; touch $W/exact.done" >/dev/null 2>&1 &
    setsid nohup bash -c "$C --gpu 0 --order fast > $W/cmp.txt 2>&1;
      CK=\$(ls -d $W/cmp/out-fast/v*/checkpoint-* | sort -V | tail -1);
      python3 scripts/gpu/export.py --config $W/trainbot.toml --checkpoint \$CK --out $W/cmp --device 0 > $W/export.txt 2>&1;
      while [ ! -f $W/exact.done ]; do sleep 1; done;
      $C --gpu 0 --order fast --name fast_alone --pair fast_alone,fast --goal 0 >> $W/cmp.txt 2>&1; sleep 3;
      $C --gpu 0,1 --order fast --name fast2 --pair fast_alone,fast2 --goal 1.8 >> $W/cmp.txt 2>&1;
      $C --report >> $W/cmp.txt 2>&1; touch $W/bg.done" > /dev/null 2>&1 &
    bash "$0" follow ;;
  spy)  # where a step's host time goes: py-spy (carried in .gpu/) records the default's training process for 20 s
         # of wall time (--idle: every thread, waiting or not), then 15 s of CPU time only
    setup 2>&1 | tee $RES/setup.txt
    python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0 --order fast --name fast_spy \
      > $W/cmp.txt 2>&1 &
    end=$(( $(date +%s) + 200 ))
    until grep -qs '"global_step/max_steps": "2[0-9]/' $W/cmp/out-fast_spy/v*/logging.jsonl || [ $(date +%s) -gt $end ]; do sleep 2; done
    pid=$(pgrep -f "runner/swift_entry.py sft" | head -1)
    .gpu/py-spy record --pid $pid --duration 20 --rate 200 --idle --format raw -o $RES/spy_idle.txt > $RES/spy.log 2>&1
    .gpu/py-spy record --pid $pid --duration 15 --rate 200 --format raw -o $RES/spy_busy.txt >> $RES/spy.log 2>&1
    wait; tail -3 $W/cmp.txt; collect ;;
  multi)  # the default on one GPU, then on two, one after the other (a lease too short for the literal job)
    setup 2>&1 | tee $RES/setup.txt
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp"
    $C --gpu 0 --order fast --name fast_alone > $W/cmp.txt 2>&1; sleep 3
    $C --gpu 0,1 --order fast --name fast2 --pair fast_alone,fast2 --goal 1.8 >> $W/cmp.txt 2>&1
    grep -v '^\[' $W/cmp.txt | tail -60; collect ;;
  stop)  # a stop of a two-GPU job at step 5 (both ranks must see SIGINT), then the default alone, Triton warm
    setup 2>&1 | tee $RES/setup.txt
    python3 scripts/gpu/stop_ranks.py --config $W/trainbot.toml --work $W/cmp > $W/cmp_stop.txt 2>&1
    tail -3 $W/cmp_stop.txt; grep -n "KeyboardInterrupt\|trainbot\]\|exitcode\|SIGTERM" $W/cmp/stop.log | cut -c1-200 | tail -12
    python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0 --order fast --name fast_warm \
      > $W/cmp.txt 2>&1; tail -2 $W/cmp.txt; collect ;;
  wide)  # issue 16: one micro-batch of 16 without checkpointing against today's 8 x 2, then the same compiled
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    python3 scripts/gpu/probe.py --config $W/trainbot.toml --out $W/probes --steps 20 --budget-s 420 \
      b16-nogc-liger b8x2-nogc-liger b16-nogc-liger-compile 2>&1 | tail -12
    collect ;;
  profile)  # issue 16: torch.profiler over steps 12-14 of the default and step 3 of the literal job
    setup 2>&1 | tee $RES/setup.txt
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0 --wrap $REPO/scripts/gpu/step_profile.py"
    PROF_OUT=$RES/profile_fast.txt PROF_START=12 PROF_COUNT=3 $C --order fast --name prof_fast > $W/cmp.txt 2>&1
    PROF_OUT=$RES/profile_exact.txt PROF_START=3 PROF_COUNT=1 $C --order exact --name prof_exact >> $W/cmp.txt 2>&1
    grep -v '^\[' $W/cmp.txt | tail -5; head -12 $RES/profile_*.txt; collect ;;
  attn)  # issue 16: the default as it was (cuDNN attention, cold Triton), the default now, then the literal job in
         # the background (follow it in the next call), then the old default again (warm)
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0"
    setsid nohup bash -c "$C --order fast --name fast_cudnn --env TRAINBOT_NO_CUDNN_ATTENTION=0 > $W/cmp.txt 2>&1; sleep 3;
      $C --order fast >> $W/cmp.txt 2>&1; sleep 3;
      $C --order exact >> $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --name fast_cudnn_warm --env TRAINBOT_NO_CUDNN_ATTENTION=0 --pair fast_cudnn_warm,fast --goal 0 >> $W/cmp.txt 2>&1;
      $C --report >> $W/cmp.txt 2>&1; touch $W/bg.done" > /dev/null 2>&1 &
    bash "$0" follow ;;
  warm)  # issue 16, 2026-12-01 (third session): padding-free again now that cuDNN's attention is off, and the warm start
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0"
    setsid nohup bash -c "$C --order fast --warm --name fast_triton_cold --pair fast_triton_cold,fast_triton_cold > $W/cmp.txt 2>&1; sleep 3;
      $C --order exact --pair exact,exact >> $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --warm >> $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --padded --warm --name padded_warm --pair exact,padded_warm >> $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --padded --name padded --pair exact,padded >> $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --name packed --pair exact,packed >> $W/cmp.txt 2>&1;
      $C --report --pair padded,fast --goal 0 >> $W/cmp.txt 2>&1;
      $C --report >> $W/cmp.txt 2>&1; touch $W/bg.done" > /dev/null 2>&1 &
    bash "$0" follow ;;
  warm2)  # the warm start alone, after its CUDA check was fixed (torch maps libcuda at import; only cuInit counts):
          # warm to step 5 (Triton cold), the padding-free default afresh, warm again; each run's files saved as it ends
    setup 2>&1 | tee $RES/setup.txt
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0"
    for run in "--warm --name warm_triton_cold --stop-after 5" "--name afresh" "--warm --name warm"; do
      $C --order fast $run --pair afresh,warm --goal 0 >> $W/cmp.txt 2>&1; sleep 3
      (cd $W && tar czf $RES/details.tgz cmp/*.json cmp/*.log cmp.txt 2>/dev/null)
      grep -h "ready:\|started warm\|not started" $W/cmp/*.log | cut -c1-160
    done
    grep -v '^\[' $W/cmp.txt | grep -v '^ *[0-9]* *[0-9.]* *[0-9.]* *[-+]' | tail -30 ;;
  final)  # issue 16, 2026-12-01 (fourth session): goal 1 in one lease, the export on the job's free GPU (goal 3)
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    python3 -c "import safetensors; print('safetensors', safetensors.__version__)" >> $RES/facts.txt 2>&1
    (df -h $W; mount | grep " / ") >> $RES/facts.txt 2>&1
    python3 scripts/gpu/write_probe.py $W/wp > $W/write_probe.txt 2>&1; tail -1 $W/write_probe.txt
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0"
    E="python3 scripts/gpu/export.py --config $W/trainbot.toml --out $W/cmp"
    setsid nohup bash -c "$C --order fast --warm --name warm_triton_cold --pair warm_triton_cold,warm_triton_cold > $W/cmp.txt 2>&1;
      CK=\$(ls -d $W/cmp/out-warm_triton_cold/v*/checkpoint-* | sort -V | tail -1); sleep 3;
      $E --checkpoint \$CK --device cpu --plain --name cpu_plain > $W/export.txt 2>&1; sleep 3;
      $E --checkpoint \$CK --device 0 --warm --name gpu_warm --against $W/cmp/merged-cpu_plain >> $W/export.txt 2>&1;
      rm -rf $W/cmp/merged-gpu_warm; sleep 3;
      $E --checkpoint \$CK --device 0 --name gpu_afresh >> $W/export.txt 2>&1; rm -rf $W/cmp/merged-gpu_afresh; sleep 3;
      $E --checkpoint \$CK --device cpu --name cpu_entry --against $W/cmp/merged-cpu_plain >> $W/export.txt 2>&1;
      rm -rf $W/cmp/merged-*; sleep 3;
      $C --order exact --pair exact,exact >> $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --warm --pair exact,fast >> $W/cmp.txt 2>&1; sleep 3;
      python3 scripts/gpu/validate.py --config $W/trainbot.toml --work $W/val2 --export --export-wait-s 120 > $W/val2.txt 2>&1;
      $C --report >> $W/cmp.txt 2>&1; touch $W/bg.done" > /dev/null 2>&1 &
    bash "$0" follow ;;
  final2)  # the export's writer with a pinned buffer, and the console's job once its warm process is ready
    setup 2>&1 | tee $RES/setup.txt
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0"
    $C --order fast --warm --name triton_warmup --stop-after 5 > $W/cmp.txt 2>&1; sleep 3
    python3 scripts/gpu/validate.py --config $W/trainbot.toml --work $W/val2 --export --export-wait-s 120 > $W/val2.txt 2>&1
    grep -a "warm process ready\|^job:\|^export:" $W/val2.txt | cut -c1-400
    CK=$(ls -d $W/output/full-*/v*/checkpoint-[0-9]* | grep -v merged | sort -V | tail -1); rm -rf $CK-merged
    sleep 3; exports $CK ;;
  final3)  # the same exports from a checkpoint of compare.py's default job (the console's was lost to a glob)
    setup 2>&1 | tee $RES/setup.txt
    python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu 0 --order fast --warm > $W/cmp.txt 2>&1
    grep -a "rc=" $W/cmp.txt; sleep 3
    exports $(ls -d $W/cmp/out-fast/v*/checkpoint-[0-9]* | grep -v merged | sort -V | tail -1) ;;
  h100)  # issue 31: micro-batches by tokens without checkpointing, Triton's kernels kept by trainbot
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu $GPU"
    rm -rf $W/tb/compile $W/triton-cold  # the lease's first bot fills the kept kernels (a fresh machine has none)
    setsid nohup bash -c "python3 scripts/gpu/validate.py --config $W/trainbot.toml --work $W/val2 --gpu $GPU \
        > $W/val2.txt 2>&1;
      sleep 3; $C --order fast --warm --pair fast,fast > $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --warm --name fast_triton_cold --env TRITON_CACHE_DIR=$W/triton-cold --stop-after 1 \
        --pair fast_triton_cold,fast_triton_cold >> $W/cmp.txt 2>&1; sleep 3;
      $C --order exact --pair exact,fast >> $W/cmp.txt 2>&1; touch $W/bg.done" > /dev/null 2>&1 &
    H100=1 bash "$0" follow ;;
  h100s)  # issue 31 in one call, where the device time left cannot hold the literal job's ~11 minutes: the same as
           # h100, the literal flags only to step 12 (their launch, steady speed and losses side by side)
    setup 2>&1 | tee $RES/setup.txt
    facts > $RES/facts.txt 2>&1
    C="python3 scripts/gpu/compare.py --config $W/trainbot.toml --work $W/cmp --gpu $GPU"
    rm -rf $W/tb/compile $W/triton-cold
    setsid nohup bash -c "python3 scripts/gpu/validate.py --config $W/trainbot.toml --work $W/val2 --gpu $GPU \
        > $W/val2.txt 2>&1;
      sleep 3; $C --order fast --warm --pair fast,fast > $W/cmp.txt 2>&1; sleep 3;
      $C --order fast --warm --name fast_triton_cold --env TRITON_CACHE_DIR=$W/triton-cold --stop-after 1 \
        --pair fast_triton_cold,fast_triton_cold >> $W/cmp.txt 2>&1; sleep 3;
      $C --order exact --stop-after 12 --pair exact,fast >> $W/cmp.txt 2>&1; touch $W/bg.done" > /dev/null 2>&1 &
    H100=1 FOLLOW_S=${FOLLOW_S:-560} bash "$0" follow ;;
  follow)
    end=$(( $(date +%s) + ${FOLLOW_S:-530} ))
    while [ ! -f $W/bg.done ] && [ $(date +%s) -lt $end ]; do
      sleep 15
      latest=$(ls -t $W/cmp/out-*/v*/logging.jsonl $W/output/*/v*/logging.jsonl 2>/dev/null | head -1)
      echo "$(date +%T) ${latest#$W/} $(tail -1 $latest 2>/dev/null | cut -c1-130)"
    done
    cat $W/cmp.txt $W/export.txt 2>/dev/null | grep -v '^\[' | tail -90
    grep -v '^{' $W/val2.txt 2>/dev/null | cut -c1-300 | tail -40
    if [ -n "${H100:-}" ] || [ -f $W/tb/compile/compile.log ]; then  # issue 31: what the levers and the kernels did
      cat $W/tb/compile/compile.log 2>/dev/null | tail -3
      for run in fast fast_triton_cold; do
        [ -f $W/cmp/$run.log ] || continue
        echo "== $run: $(grep -c "" $W/cmp/$run.log) lines"
        grep -a "micro-batches by tokens\|not applied\|started warm\|handed over" $W/cmp/$run.log | cut -c1-220
        grep -a " 1/94 \[" $W/cmp/$run.log | head -1 | cut -c1-120  # tqdm's first step, seconds after the hand-over
      done
    fi
    [ -f $W/bg.done ] && echo "BACKGROUND DONE" || echo "BACKGROUND STILL RUNNING"
    collect ;;
  *) echo "usage: $0 probes|full|pair|duo|spy|multi|stop|wide|profile|attn|warm|warm2|final|final2|final3|h100|h100s|follow"
     exit 2 ;;
esac
