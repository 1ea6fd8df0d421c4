#!/usr/bin/env bash
# One prepared check for a GPU machine with JAX and CUDA and no TensorFlow (the H200 the
# device tool lends), in one call of 540 s. First, on a machine with network:
# bash benchmarks/device_prepare.sh; then run with carry [".whl", ".data"] and timeout_s 540:
#   OUT=/tmp/out bash benchmarks/device_check.sh
# Phases, in this order, each bounded (timeout -k), each in its own session (setsid),
# each allowed to fail without stopping the rest; the whole script within BUDGET s:
#   1. the device and versions (device.txt);
#   2. numerics: benchmarks/real_data_parity.py --device-check, if that script exists
#      (parity.txt; at most 200 s: it took 145 s on an H200); then the saturated-output and un-warmed-steps tests
#      (epsilon.txt; at most 120 s);
#   3. the median all-in step (index batches from the host, the step, the logs: a fit
#      epoch of 200 steps, per step) and the step alone, in float32 with JAX's matmul
#      precision "highest" (the faithful setting: the default on an H200 is TF32, 10
#      mantissa bits) and in mixed_bfloat16 (step_time.txt; at most 150 s);
#   4. cells of the `full` sweep protocol (code and paper x 5 seeds, full MNIST, 300
#      epochs, $SWEEP_PRECISION, default mixed_bfloat16) for the time that remains, in
#      programs of cells (reproduce/sweep.py --cells-per-program $CELLS: up to $CELLS
#      seeds of a configuration in one vmapped JAX program, starts computed once per
#      seed), $JOBS programs at once on the one GPU (each with 1/$JOBS of its memory); at the
#      end of its time the sweep and its cells get SIGTERM and $GRACE s to write their
#      checkpoints and sweep.md, then whatever is left of its session gets SIGKILL
#      (sweep.log as it goes; sweep.md, the sweep's own summary, if it wrote one);
#   5. the summary (summary.txt, cells.csv): each phase's outcome, each cell's state
#      (finished, failed and why, stopped, running), epochs and ACC per epoch as far as
#      its history.csv got, and the epochs per minute of all cells together against one
#      process's rate from step 3. It is rewritten after every phase and every 15 s of
#      the sweep, and once more by a trap on EXIT (TERM and INT included): a failed
#      phase, a killed sweep or an outer SIGTERM still leave it.
# At most 8 files under $OUT, no folder; each written as it goes, and printed too.
# On a CPU (to test it): DGG_DEVICE_TEST=1 shrinks step 3 and runs the `tiny` protocol.
# Knobs: CELLS (cells per program), JOBS (programs at once), CHECKPOINT_EVERY (epochs); for tests: GRACE, KILL_AFTER, RESERVE, MIN_SWEEP (seconds), SWEEP_PRECISION,
# DGG_SWEEP_ARGS (more arguments for reproduce/sweep.py, e.g. "--epochs 4"),
# PARITY_SCRIPT (default benchmarks/real_data_parity.py).
set -uo pipefail
cd "$(dirname "$0")/.."
START=$(date +%s)
OUT=${OUT:-/tmp/dgg_device_check}
BUDGET=${BUDGET:-480}               # seconds for the whole script (the call: 540)
CELLS=${CELLS:-5}                   # cells per program (reproduce/sweep.py --cells-per-program)
JOBS=${JOBS:-2}                     # programs at once (code's and paper's)
CHECKPOINT_EVERY=${CHECKPOINT_EVERY:-10}  # epochs between a cell's checkpoints (40 MB each on full MNIST)
GRACE=${GRACE:-45}                  # the sweep's time to stop after SIGTERM
KILL_AFTER=${KILL_AFTER:-10}        # any other phase's
SIG_GRACE=${SIG_GRACE:-20}          # a phase's, when the script itself gets SIGTERM/INT
RESERVE=${RESERVE:-15}              # kept for the summary at the end
MIN_SWEEP=${MIN_SWEEP:-60}          # no sweep with less time than this
PRECISION=${SWEEP_PRECISION:-mixed_bfloat16}
PARITY=${PARITY_SCRIPT:-benchmarks/real_data_parity.py}
read -r -a EXTRA <<< "${DGG_SWEEP_ARGS:-}"
if [ -n "${DGG_DEVICE_TEST:-}" ]; then STEPS=(--steps 3 --epoch-samples 500); PROTOCOL=tiny; EPOCH_STEPS=10
else STEPS=(--steps 50 --epoch-samples 20000); PROTOCOL=full; EPOCH_STEPS=700; fi
mkdir -p "$OUT"
WORK=$(mktemp -d)
SWEEP=$WORK/sweep                   # many files: only summaries go to $OUT
PHASES=$WORK/phases.txt
: > "$PHASES"
CUR_PID= CUR_NAME= FOLLOW_PID= WATCH_PID= SWEEP_T0= SWEEP_WALL=0 FAILED=0
STATE="in progress"

left() { echo $(( BUDGET - ($(date +%s) - START) )); }
elapsed() { echo $(( $(date +%s) - START )); }
note() { printf '%s\t%s\n' "$1" "$2" >> "$PHASES"; echo "[$(elapsed) s] $1: $2"; }
outcome() {
    case $1 in 0) echo ok;; 124) echo "stopped at its bound (SIGTERM)";;
               137) echo "killed at its bound + grace (SIGKILL)";; *) echo "exit $1";; esac
}

# The live processes of session $1 (a phase started with setsid: its session id is the
# pid of the backgrounded setsid, which, not being a group leader, does not fork).
session_pids() {
    local f s state sess
    for f in /proc/[0-9]*/stat; do
        { s=$(< "$f"); } 2>/dev/null || continue
        read -r state _ _ sess _ <<< "${s##*) }"
        [ "$sess" = "$1" ] && [ "$state" != Z ] && { f=${f#/proc/}; echo "${f%/stat}"; }
    done
}

# SIGTERM to every process of session $1, $2 s to end, then SIGKILL to what is left
# (a cell in another process group of the session, or one that ignores SIGTERM).
stop_session() {
    local pids t
    pids=$(session_pids "$1")
    [ -z "$pids" ] && return 0
    kill -TERM $pids 2>/dev/null
    for (( t = 0; t < $2; t++ )); do
        [ -z "$(session_pids "$1")" ] && return 0
        sleep 1
    done
    pids=$(session_pids "$1")
    if [ -n "$pids" ]; then
        echo "[$(elapsed) s] killing what is left of session $1:" $pids
        kill -KILL -- -"$1" $pids 2>/dev/null
    fi
    return 0
}

# Print file $1 as it grows, until process $2 ends (deaf to a SIGTERM or Ctrl-C sent to
# the check's process group, so that a phase's last lines still print while it stops).
follow() {
    ( trap '' TERM INT
      tail -n +1 -f -s 0.2 --pid="$2" "$1" 2>/dev/null | grep --line-buffered -v -e Warning -e 'warnings.warn' ) &
    FOLLOW_PID=$!
}

# summary.txt from what exists now (written whole, then renamed into place).
summary() {
    local wall=$SWEEP_WALL tmp="$OUT/.summary.$BASHPID"
    [ -n "$SWEEP_T0" ] && [ "$SWEEP_WALL" = 0 ] && wall=$(( $(date +%s) - SWEEP_T0 ))
    if ! timeout -k 2 20 python3 benchmarks/device_summary.py "$SWEEP" "$wall" \
            "$OUT/step_time.txt" "$OUT/cells.csv" "$EPOCH_STEPS" --precision "$PRECISION" \
            --phases "$PHASES" --device "$OUT/device.txt" --sweep-log "$OUT/sweep.log" \
            --state "device check: $STATE at $(elapsed) s of a $BUDGET s budget" "$@" \
            > "$tmp" 2>&1; then
        { echo "device check: $STATE at $(elapsed) s; device_summary.py failed:"
          cat "$tmp"; echo "phases:"; cat "$PHASES"; } > "$tmp.2" 2>/dev/null
        mv -f "$tmp.2" "$tmp"
    fi
    mv -f "$tmp" "$OUT/summary.txt"
}

# Rewrite the summary (and cells.csv) every 15 s while the sweep runs; on SIGTERM it
# finishes the summary it is writing, if any, and stops.
start_watch() {
    ( trap 'kill $SLEEP 2>/dev/null; exit 0' TERM
      while :; do sleep 15 & SLEEP=$!; wait $SLEEP; summary; done ) &
    WATCH_PID=$!
}
stop_watch() {
    [ -n "$WATCH_PID" ] && { kill -TERM "$WATCH_PID" 2>/dev/null; wait "$WATCH_PID" 2>/dev/null; }
    WATCH_PID=
}

# run_phase NAME CAP FILE CMD...: CMD in its own session, bounded by timeout -k
# KILL_AFTER min(CAP, the budget left less RESERVE), its output into FILE as it goes.
run_phase() {
    local name=$1 cap=$2 file=$3 secs rc t0
    shift 3
    secs=$(( $(left) - RESERVE - KILL_AFTER ))
    (( cap < secs )) && secs=$cap
    if (( secs < 5 )); then note "$name" "skipped: $(left) s of the budget left"; FAILED=1; return 1; fi
    echo "== $name (at most $secs s)"
    t0=$(date +%s)
    : > "$file"
    setsid timeout -k "$KILL_AFTER" "$secs" "$@" > "$file" 2>&1 &
    CUR_PID=$! CUR_NAME=$name
    follow "$file" "$CUR_PID"
    wait "$CUR_PID"; rc=$?
    stop_session "$CUR_PID" "$KILL_AFTER"      # anything it left behind
    CUR_PID=
    wait "$FOLLOW_PID" 2>/dev/null
    note "$name" "$(outcome $rc) after $(( $(date +%s) - t0 )) s (bound $secs s)"
    (( rc )) && FAILED=1
    summary
    return $rc
}

sweep_phase() {
    local run rc
    run=$(( $(left) - GRACE - KILL_AFTER - RESERVE ))
    if [ ! -d "$DATA" ]; then note sweep "skipped: no MNIST in $DATA (run benchmarks/device_prepare.sh)"; FAILED=1; return; fi
    if (( run < MIN_SWEEP )); then note sweep "skipped: $run s would be left for it (< $MIN_SWEEP)"; FAILED=1; return; fi
    echo "== sweep: $PROTOCOL protocol cells (code, paper), programs of $CELLS cells, $JOBS at once, $PRECISION, for $run s" \
         "(then SIGTERM and $GRACE s to stop)"
    SWEEP_T0=$(date +%s)
    : > "$OUT/sweep.log"
    XLA_PYTHON_CLIENT_MEM_FRACTION=$(python3 -c "print(round(0.9 / $JOBS, 3))") \
    setsid timeout -k "$GRACE" "$run" python3 reproduce/sweep.py --protocol "$PROTOCOL" \
        --configs code,paper --precision "$PRECISION" --data "$DATA" --out "$SWEEP" \
        --cells-per-program "$CELLS" --jobs "$JOBS" --checkpoint-every "$CHECKPOINT_EVERY" ${EXTRA[@]+"${EXTRA[@]}"} > "$OUT/sweep.log" 2>&1 &
    CUR_PID=$! CUR_NAME=sweep
    follow "$OUT/sweep.log" "$CUR_PID"
    start_watch
    wait "$CUR_PID"; rc=$?
    stop_session "$CUR_PID" "$KILL_AFTER"      # a cell that outlived the sweep
    CUR_PID=
    SWEEP_WALL=$(( $(date +%s) - SWEEP_T0 ))
    stop_watch
    wait "$FOLLOW_PID" 2>/dev/null
    [ -f "$SWEEP/sweep.md" ] && cp "$SWEEP/sweep.md" "$OUT/sweep.md"
    note sweep "$(outcome $rc) after $SWEEP_WALL s (bound $run s, then $GRACE s grace)"
    (( rc && rc != 124 )) && FAILED=1
    summary
}

finish() {
    local rc=$?
    trap '' TERM INT
    if [ -n "$CUR_PID" ]; then                # a phase was running: the script was stopped
        note "$CUR_NAME" "cut short at $(elapsed) s (the check was $STATE): SIGTERM to its session, $SIG_GRACE s to stop"
        summary
        stop_session "$CUR_PID" "$SIG_GRACE"
        wait "$CUR_PID" 2>/dev/null
        CUR_PID=
        [ -n "$SWEEP_T0" ] && SWEEP_WALL=$(( $(date +%s) - SWEEP_T0 ))
    fi
    stop_watch
    [ -f "$SWEEP/sweep.md" ] && cp "$SWEEP/sweep.md" "$OUT/sweep.md"
    summary --final
    rm -f "$OUT"/.summary.* "$OUT"/cells.csv.*.tmp
    echo "== summary ($OUT/summary.txt)"
    cat "$OUT/summary.txt"
    local n
    n=$(find "$OUT" -type f | wc -l)
    (( n > 8 )) && echo "warning: $n files under $OUT; the device tool returns 8"
    echo "files under $OUT:" $(cd "$OUT" && find . -type f | sort)
    timeout 20 rm -rf "$WORK" "${DEPS:-}"
    echo "device check: done at $(elapsed) s, exit $rc"
    exit "$rc"
}
trap finish EXIT
trap 'STATE="stopped by SIGTERM"; exit 143' TERM
trap 'STATE="stopped by SIGINT"; exit 130' INT

echo "device check: budget $BUDGET s, out $OUT, $(date -u +%FT%TZ)"
# Keras and its missing dependencies from the carried wheels, into a private folder
DEPS=$(mktemp -d)
if ! python3 -c "import keras" 2>/dev/null; then
    if ! ls .whl/*.whl > /dev/null 2>&1; then
        note deps "no keras and no .whl/ (run benchmarks/device_prepare.sh first)"; STATE="stopped: no keras"; exit 3
    fi
    run_phase deps 60 "$WORK/deps.log" python3 -m pip install -q --disable-pip-version-check \
        --no-index --no-deps --target "$DEPS" .whl/*.whl
fi
export PYTHONPATH="$DEPS:$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
export KERAS_BACKEND=jax JAX_DEFAULT_MATMUL_PRECISION=highest XLA_PYTHON_CLIENT_PREALLOCATE=false
DATA=${DGG_MNIST:-.data/mnist}

run_phase device 60 "$OUT/device.txt" bash -c '
    timeout 20 nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader \
        2>/dev/null || echo "no nvidia-smi; CPU: $(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2)"
    python3 -c "import platform, jax, keras; print(\"python\", platform.python_version(), \"jax\", jax.__version__, \"keras\", keras.__version__, jax.devices())"
    python3 -c "import sys, dgg_tf.training; print(\"tensorflow imported:\", \"tensorflow\" in sys.modules)"'

if [ -f "$PARITY" ]; then
    # without JAX_DEFAULT_MATMUL_PRECISION: dgg_tf's own default (highest) is what is checked
    run_phase parity 200 "$WORK/parity.log" env -u JAX_DEFAULT_MATMUL_PRECISION DGG_MNIST="$DATA" \
        python3 "$PARITY" --device-check --out "$OUT/parity.txt"
    [ -s "$OUT/parity.txt" ] || cp "$WORK/parity.log" "$OUT/parity.txt" 2>/dev/null   # its output, then
else
    echo "parity: script not present ($PARITY)"
    note parity "script not present ($PARITY)"
fi

# the compiled steps keep log(. + 1e-10) where outputs saturate, and the un-warmed first
# steps on real data stay finite, on this device (tests that need no TensorFlow)
run_phase epsilon 120 "$OUT/epsilon.txt" env DGG_MNIST="$DATA" python3 -m pytest -q \
    -p no:cacheprovider tests/test_unwarmed_steps.py \
    tests/test_objective.py::test_compiled_steps_keep_the_epsilon_where_outputs_saturate

run_phase step_time 150 "$OUT/step_time.txt" python3 benchmarks/step_time.py --backend jax \
    --alone "${STEPS[@]}" --precision float32 mixed_bfloat16

sweep_phase

STATE=finished
exit "$FAILED"
