#!/bin/sh
# make bench: runs every benchmark and prints one line per figure, each
# starting with its id (issue 6's table), after a header with the
# conditions. The server is pinned to core 0 and the load generator to
# core 1 (taskset). Benchmarks only print; nothing here passes or fails.
set -eu
cd "$(dirname "$0")/.."
BIN=$PWD/bin/trainyard
LOAD=$PWD/build/bench/load
SECONDS_EACH=${BENCH_SECONDS:-5}
WORK=$(mktemp -d /tmp/trainyard-bench.XXXXXX)
# Agents run tasks as users of their own, who must reach the work dirs under it.
chmod 711 "$WORK"
PIDS=""
cleanup() {
    for p in $PIDS; do kill "$p" 2>/dev/null || true; done
    for p in $PIDS; do wait "$p" 2>/dev/null || true; done
    if [ -n "${BENCH_KEEP:-}" ]; then echo "# bench: kept $WORK"; else rm -rf "$WORK"; fi
}
trap cleanup EXIT INT TERM

start_server() { # $1 = name, rest = extra options
    name=$1; shift
    mkdir -p "$WORK/$name"
    taskset -c 0 "$BIN" server --listen 127.0.0.1:0 --data "$WORK/$name" --log-level warn "$@" \
        2>"$WORK/$name.log" &
    PIDS="$PIDS $!"
    i=0
    while [ ! -f "$WORK/$name/server.url" ]; do
        i=$((i + 1)); [ $i -gt 100 ] && { echo "bench: server did not start" >&2; exit 1; }
        sleep 0.1
    done
    URL=$(cat "$WORK/$name/server.url")
    TOKEN=$(cat "$WORK/$name/admin.token")
}

# BENCH_PERF=1: stops the perf record of $PERF_PID and prints the
# server's top functions and threads.
perf_report() { # NAME (of $WORK/NAME.perf) LABEL PERCENT-LIMIT LINES
    [ -n "${BENCH_PERF:-}" ] || return 0
    kill -INT "$PERF_PID"
    wait "$PERF_PID" || true
    echo "# $2 profile: the server's top functions (perf report --no-children)"
    perf report -i "$WORK/$1.perf" --no-children --percent-limit "$3" --stdio -g none \
        --sort symbol >"$WORK/$1.report" 2>&1 || true
    grep '%' "$WORK/$1.report" | head -"$4" | sed 's/^/# /'
    grep -q "%" "$WORK/$1.report" || echo "# perf: no samples: $(ls -l "$WORK/$1.perf" 2>&1), report $(wc -c <"$WORK/$1.report") bytes"
    echo "# $2 profile by thread (perf report --sort comm)"
    perf report -i "$WORK/$1.perf" --no-children --percent-limit "$3" --stdio -g none \
        --sort comm 2>/dev/null | grep '%' | head -8 | sed 's/^/# /'
}

# Stops the last N processes started (a benchmark's server and agents),
# so they take no CPU from the benchmarks after it.
stop_last() { # N
    for p in $(echo $PIDS | awk -v n="$1" '{ for (i = NF - n + 1; i <= NF; i++) if (i > 0) print $i }'); do
        kill "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
}

api() { # METHOD PATH [BODY]
    if [ $# -ge 3 ]; then
        curl -sf -X "$1" -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
            -d "$3" "$URL$2"
    else
        curl -sf -X "$1" -H "Authorization: Bearer $TOKEN" "$URL$2"
    fi
}

# BENCH_ONLY="B10 B3" runs only the benchmarks that print those figures.
want() {
    [ -z "${BENCH_ONLY:-}" ] && return 0
    for f in $1; do
        case " $BENCH_ONLY " in *" $f "*) return 0 ;; esac
    done
    return 1
}

json() { /usr/bin/python3 -c "import sys, json; d = json.load(sys.stdin); print($1)"; }

# CPU time the hypervisor took from each core ("steal" in /proc/stat) since
# the last call: on a shared VM a figure taken while a core lost much of
# its time is low for that reason alone.
steal_ticks() { awk '$1 == "cpu0" || $1 == "cpu1" { printf "%s %s ", $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9 }' /proc/stat; }
STEAL_LAST=$(steal_ticks)
steal_note() { # LABEL
    now=$(steal_ticks)
    echo "$STEAL_LAST $now" | awk -v l="$1" '{ printf "# steal during %s: core 0 %.0f%%, core 1 %.0f%%\n", l, ($5 - $1) * 100 / ($6 - $2 + 1), ($7 - $3) * 100 / ($8 - $4 + 1) }'
    STEAL_LAST=$now
}

echo "# trainyard bench: $(nproc) cores, $(uname -m), server on core 0, load on core 1," \
     "${SECONDS_EACH}s per figure, $(date -u +%Y-%m-%dT%H:%MZ)"

if want "B1 B8"; then
steal_note "the set-up before it" >/dev/null
# ---- B1: submissions, every 201 committed ----
for sync in full normal; do
    start_server "b1-$sync" --sync "$sync"
    echo '{"experiment": "bench", "command": ["true"]}' >"$WORK/run.json"
    echo "# B1 conditions: 32 keep-alive clients, single-task spec, synchronous=$sync, no nodes"
    taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
        --body "$WORK/run.json" --conns 32 --seconds "$SECONDS_EACH" --label "B1 (sync=$sync)"
done

# ---- B8: reading a run ----
RUN=$(api POST /api/v1/runs '{"experiment": "bench", "command": ["true"]}' | json 'd["id"]')
echo "# B8 conditions: 32 keep-alive clients, GET /api/v1/runs/{id}; the libcurl client" \
     "tops out below the server, so wrk (Debian) gives the server's rate"
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs/$RUN" --token "$TOKEN" --conns 32 \
    --seconds "$SECONDS_EACH" --label "B8 (libcurl client)"
taskset -c 1 wrk -t1 -c32 -d"${SECONDS_EACH}s" --latency -H "Authorization: Bearer $TOKEN" \
    "$URL/api/v1/runs/$RUN" >"$WORK/wrk.txt"
/usr/bin/python3 - "$WORK/wrk.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
def ms(pct):
    m = re.search(r"^\s*%s%%\s+([0-9.]+)(us|ms|s)\s*$" % pct, text, re.M)
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]
rate = float(re.search(r"Requests/sec:\s+([0-9.]+)", text).group(1))
bad = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
print("B8 %.0f req/s p50=%.2fms p99=%.2fms (wrk, 32 connections, errors=%s)"
      % (rate, ms(50), ms(99), bad.group(1) if bad else 0))
PY
steal_note "B1, B8"
fi

if want "B6 B7"; then
steal_note "the set-up before it" >/dev/null
# ---- B6 and B7: metric ingestion, then a series query on 1,000,000 points ----
start_server b6 --sync full
: >"$WORK/tasks.txt"
for i in $(seq 64); do
    api POST /api/v1/runs '{"experiment": "bench-metrics", "command": ["true"]}' |
        json 'd["tasks"][0]["id"]' >>"$WORK/tasks.txt"
done
echo "# B6 conditions: 64 senders (one task each), 1000-point batches, synchronous=full"
taskset -c 1 "$LOAD" --url "$URL" --token "$TOKEN" --metrics-tasks "$WORK/tasks.txt" \
    --points 1000 --conns 64 --seconds "$SECONDS_EACH" --label "B6"
# One task gets 1,000,000 points of one metric for B7.
head -n 1 "$WORK/tasks.txt" >"$WORK/one.txt"
taskset -c 1 "$LOAD" --url "$URL" --token "$TOKEN" --metrics-tasks "$WORK/one.txt" \
    --points 1000 --conns 1 --requests 1000 --label "B7-fill" >/dev/null
B7RUN=$(echo "$(head -n 1 "$WORK/tasks.txt")" | sed 's/-a1-main$//')
COUNT=$(api GET "/api/v1/runs/$B7RUN/metrics" | json 'd["items"][0]["count"]')
echo "# B7 conditions: series of $COUNT points, max_points=1000, 8 clients"
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs/$B7RUN/metrics/loss?max_points=1000" \
    --token "$TOKEN" --conns 8 --seconds "$SECONDS_EACH" --label "B7"
steal_note "B6, B7"
fi

if want "B2 B11"; then
steal_note "the set-up before it" >/dev/null
# ---- B2 and B11: a real agent running trivial commands ----
start_server b2 --sync full
taskset -c 1 "$BIN" agent --server "$URL" --token "$TOKEN" --name bench-node \
    --listen 127.0.0.1:0 --work "$WORK/agent" --cpus 1000 --log-level warn \
    2>"$WORK/agent.log" &
PIDS="$PIDS $!"
i=0
until api GET /api/v1/nodes/bench-node 2>/dev/null | grep -q '"state":"ready"'; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "bench: agent did not register" >&2; exit 1; }
    sleep 0.1
done
echo "# B2 conditions: one idle real agent, command [\"true\"], 50 runs one after another"
: >"$WORK/b2.txt"
for i in $(seq 50); do
    R=$(api POST /api/v1/runs '{"experiment": "bench-b2", "command": ["true"]}' | json 'd["id"]')
    j=0
    until api GET "/api/v1/runs/$R" | json 'd["status"]' | grep -q completed; do
        j=$((j + 1)); [ $j -gt 200 ] && break
        sleep 0.01
    done
    api GET "/api/v1/runs/$R" | /usr/bin/python3 -c '
import sys, json, datetime
d = json.load(sys.stdin)
p = lambda s: datetime.datetime.fromisoformat(s.replace("Z", "+00:00"))
t = d["tasks"][0]
print((p(t["started_at"]) - p(d["created_at"])).total_seconds() * 1000)' >>"$WORK/b2.txt"
done
/usr/bin/python3 - "$WORK/b2.txt" <<'PY'
import sys
v = sorted(float(x) for x in open(sys.argv[1]))
print("B2 submit->running p50=%.1fms p99=%.1fms (n=%d)" % (v[len(v) // 2], v[int(len(v) * 0.99)], len(v)))
PY
echo "# B11 conditions: 500 runs of command [\"true\"] submitted at once (16 clients) to one real agent"
echo '{"experiment": "bench-b11", "command": ["true"]}' >"$WORK/run11.json"
completed() { api GET /metrics | awk '$1 == "trainyard_runs{status=\"completed\"}" { print $2 }'; }
BEFORE=$(completed)
START=$(date +%s.%N)
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
    --body "$WORK/run11.json" --conns 16 --requests 500 --label "B11-submit" >/dev/null
j=0
until [ "$(completed)" -ge $((BEFORE + 500)) ]; do
    j=$((j + 1)); [ $j -gt 1200 ] && break
    sleep 0.05
done
END=$(date +%s.%N)
/usr/bin/python3 -c "print('B11 %.0f runs/s end to end (submit, place, push, spawn, report, completed; 500 runs)' % (500 / ($END - $START)))"
echo "# B11 conditions: the agent's launcher (common/spawn.c) on core 1, /bin/true with stdout/stderr pipes"
taskset -c 1 "$PWD/build/bench/spawn"
steal_note "B2, B11"
fi

if want "S1 S2 S3"; then
steal_note "the set-up before it" >/dev/null
# ---- S1-S3: sweeps (issue 12) ----
if want "S1"; then
echo "# S1 conditions: scheduler/tpe.c proposing with 1000 finished trials in a 10-parameter mixed space (CPU time); scheduler/earlystop.c, 1000 trials x 100 reports in lockstep, noisy rising curves, stopped trials report no more (CPU time, best of 3)"
taskset -c 0 "$PWD/build/bench/sweep" s1
taskset -c 0 "$PWD/build/bench/policy" 2>/dev/null
echo "# S1 in-process S2: the same objectives without the server, 40 seeds (a 10-seed median moves by about 0.05 on Branin from seed noise alone)"
taskset -c 0 "$PWD/build/bench/sweep" s2 40
taskset -c 0 /usr/bin/python3 bench/sweep_optuna.py --seeds 40
fi
if want "S2 S3"; then
start_server s2 --sync normal
taskset -c 1 "$BIN" agent --server "$URL" --token "$TOKEN" --name sweep-node \
    --listen 127.0.0.1:0 --work "$WORK/sweep-agent" --cpus 64 --log-level warn \
    2>"$WORK/sweep-agent.log" &
PIDS="$PIDS $!"
i=0
until api GET /api/v1/nodes/sweep-node 2>/dev/null | grep -q '"state":"ready"'; do
    i=$((i + 1)); [ $i -gt 600 ] && { echo "bench: agent did not register" >&2; exit 1; }
    sleep 0.1
done
S_WANT=""
want "S2" && S_WANT="$S_WANT S2"
want "S3" && S_WANT="$S_WANT S3"
# shellcheck disable=SC2086
/usr/bin/python3 bench/sweeps.py "$URL" "$TOKEN" $S_WANT
fi
steal_note "S1-S3"
fi

if want "B3 B4"; then
steal_note "the set-up before it" >/dev/null
echo "# B3 B4 conditions: scheduler/placement.c on synthetic state (1/10 of nodes 8 GPUs," \
     "rest 1 or 0; runs: CPU, 1-GPU, 1/50 8-rank 8-GPU gangs)"
taskset -c 0 "$PWD/build/bench/placement"
steal_note "B3, B4"
fi

# ---- B3 (server): a real placement of 100,000 queued tasks onto 10,000 hollow nodes ----
if want "B3"; then
steal_note "the set-up before it" >/dev/null
start_server b3s --sync full --node-timeout 30
SERVER_PID=$(echo $PIDS | awk '{ print $NF }')
# The queue first, with no node at all: a pass then reads nothing. Gangs
# and 1-GPU runs head the queue, the CPU runs follow; everything fits.
echo '{"experiment": "bench-b3", "command": ["true"], "distributed_backend": "pytorch", "process_count_per_node": 8, "use_gpu": true}' >"$WORK/b3gang.json"
echo '{"experiment": "bench-b3", "command": ["true"], "use_gpu": true}' >"$WORK/b3gpu.json"
echo '{"experiment": "bench-b3", "command": ["true"]}' >"$WORK/b3cpu.json"
for kind in gang:500 gpu:4000 cpu:92000; do
    taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
        --body "$WORK/b3${kind%:*}.json" --conns 32 --requests "${kind#*:}" --label "B3-submit" >/dev/null
done
b3_metrics() { # FILE: /metrics, stamped with the time it was read
    { date +%s.%N; curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics"; } >"$1"
}
b3_value() { # FILE NAME
    awk -v n="$2" '$1 == n { print $2 }' "$1"
}
b3_metrics "$WORK/b3-before.txt"
echo "# B3 (server) conditions: 96,500 queued runs (500 8-rank gangs of 8 GPUs, 4,000 1-GPU," \
     "92,000 CPU runs: 100,000 tasks) submitted with no node; then 10,000 hollow nodes join" \
     "(1,000 with 8 GPUs and 64 CPUs, 4,500 with 1 GPU, 4,500 with none, 16 CPUs; on core 1);" \
     "from their start (the kick) to the last task placed and to the last assignment accepted" \
     "by its node (/metrics polled every 0.1 s); synchronous=full"
# BENCH_PERF=1: the server's profile over the window (perf, call graphs).
if [ -n "${BENCH_PERF:-}" ]; then
    perf record -F 499 -g -p "$SERVER_PID" -o "$WORK/b3.perf" 2>/dev/null &
    PERF_PID=$!
fi
KICK=$(date +%s.%N)
for spec in h8:1000:8:64 h1:4500:1:16 h0:4500:0:16; do
    IFS=: read -r prefix count gpus cpus <<EOF_SPEC
$spec
EOF_SPEC
    taskset -c 1 "$BIN" agent --hollow "$count" --server "$URL" --token "$TOKEN" --name "$prefix" \
        --listen 127.0.0.1:0 --cpus "$cpus" --gpus "$gpus" --task-seconds 3600 --log-level warn \
        2>"$WORK/hollow3-$prefix.log" &
    PIDS="$PIDS $!"
done
READY_AT=""
PLACED_AT=""
STARTED_AT=""
# Bounded: at this size the push path may not finish (see bench/README.md).
B3_LIMIT=${BENCH_B3_LIMIT:-300}
while :; do
    b3_metrics "$WORK/b3-now.txt"
    now=$(head -n 1 "$WORK/b3-now.txt")
    if [ -z "$READY_AT" ] && [ "$(b3_value "$WORK/b3-now.txt" 'trainyard_nodes{state="ready"}')" = 10000 ]; then
        READY_AT=$now
    fi
    placed=$(b3_value "$WORK/b3-now.txt" trainyard_scheduler_placed_tasks_total)
    if [ -z "$PLACED_AT" ] && [ "${placed:-0}" -ge 100000 ]; then
        PLACED_AT=$now
    fi
    # Started: every run running (or done), so every task was taken by its
    # node, also those whose push timed out on its way back.
    waiting=$(awk '$1 == "trainyard_runs{status=\"queued\"}" || $1 == "trainyard_runs{status=\"starting\"}" { n += $2 } END { print n + 0 }' "$WORK/b3-now.txt")
    if [ -z "$STARTED_AT" ] && [ -n "$PLACED_AT" ] && [ "$waiting" = 0 ]; then
        STARTED_AT=$now
    fi
    pushed=$(b3_value "$WORK/b3-now.txt" trainyard_scheduler_pushed_tasks_total)
    [ "${pushed:-0}" -ge 100000 ] && break
    [ -n "$STARTED_AT" ] && break
    awk -v now="$now" -v kick="$KICK" -v l="$B3_LIMIT" 'BEGIN { exit !(now - kick >= l) }' && break
    sleep 0.1
done
/usr/bin/python3 - "$WORK/b3-before.txt" "$WORK/b3-now.txt" "$KICK" "${READY_AT:-0}" "${PLACED_AT:-0}" "${STARTED_AT:-0}" <<'PY'
import sys
def read(path):
    lines = open(path).read().splitlines()
    vals = {}
    for l in lines[1:]:
        if l and not l.startswith("#"):
            k, v = l.rsplit(" ", 1)
            vals[k] = float(v)
    return float(lines[0]), vals
_, a = read(sys.argv[1])
end, b = read(sys.argv[2])
kick, ready, placed, started = (float(x) for x in sys.argv[3:7])
d = lambda k: b.get(k, 0) - a.get(k, 0)
passes = d("trainyard_scheduler_pass_seconds_count")
total = d("trainyard_scheduler_pass_seconds_sum")
phases = ["read", "place", "commit", "reasons", "outbox", "expire", "ack"]
split = ", ".join("%s %.2f" % (p, d('trainyard_scheduler_phase_seconds_total{phase="%s"}' % p))
                  for p in phases)
tasks = d("trainyard_scheduler_placed_tasks_total")
pushed = d("trainyard_scheduler_pushed_tasks_total")
failed = d("trainyard_scheduler_push_failures_total")
if pushed >= 100000:
    end_text = "last assignment accepted %.2f s after" % (end - kick)
elif started:
    end_text = ("every run running %.2f s after (its nodes took every task; %d pushes timed out "
                "on their way back)" % (started - kick, 100000 - pushed))
else:
    end_text = "not all accepted when it stopped looking, %.0f s after" % (end - kick)
print("B3 (server) %d of 100000 tasks placed, %d accepted by 10000 hollow nodes: last placement "
      "committed %s after the kick, %s; %d passes, %.2f s in passes (%.0f ms each on average); "
      "the scheduler thread's seconds: %s; %d failed pushes; all nodes ready %s after the kick"
      % (tasks, pushed, "%.2f s" % (placed - kick) if placed else "never", end_text, passes,
         total, total * 1000 / max(passes, 1), split, failed,
         "%.2f s" % (ready - kick) if ready else "never"))
runs = ", ".join("%s %d" % (k.split('"')[1], v) for k, v in sorted(b.items())
                 if k.startswith("trainyard_runs{") and v)
print("# B3 (server) at the end: runs %s; nodes lost %d" % (runs, d("trainyard_nodes_lost_total")))
PY
# Where the pushes not acknowledged are: the scheduler's counts (outbox:
# still to push; sent: on their way) and why pushes failed, by kind.
echo "# B3 (server) at the end: $(api GET /api/v1/scheduler | tr -d '\n')"
grep 'push of task' "$WORK/b3s.log" | sed "s/task '[^']*'/task/" | sort | uniq -c | sort -rn |
    head -3 | sed 's/^/# B3 (server) push failures: /'
perf_report b3 "B3 (server)" 1.5 25
stop_last 4 # the server and its three hollow agents
steal_note "B3 (server)"
fi

# ---- B5, B10, B9: hollow nodes (trainyard agent --hollow N) ----
ready_nodes() {
    curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics" |
        awk '$1 == "trainyard_nodes{state=\"ready\"}" { print $2 }'
}
wait_ready() { # N [seconds]: waits until N nodes are ready, or gives up (prints how many)
    i=0
    until [ "$(ready_nodes)" -ge "$1" ]; do
        i=$((i + 1)); [ $i -gt $((${2:-120} * 5)) ] && break
        sleep 0.2
    done
}
runs_with() { # STATUS
    curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics" |
        awk -v s="trainyard_runs{status=\"$1\"}" '$1 == s { print $2 }'
}
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }

if want B5; then
steal_note "the set-up before it" >/dev/null
start_server b5 --sync full
SERVER_PID=$(echo $PIDS | awk '{ print $NF }')
taskset -c 1 "$BIN" agent --hollow 1000 --server "$URL" --token "$TOKEN" --name h \
    --listen 127.0.0.1:0 --cpus 4 --task-seconds 0.2 --log-level warn 2>"$WORK/hollow5.log" &
PIDS="$PIDS $!"
wait_ready 1000
echo '{"experiment": "bench-b5", "command": ["true"]}' >"$WORK/run5.json"
echo "# B5 conditions: 1000 hollow nodes (4 CPUs each), 3000 single-task runs from 16 clients"
if [ -n "${BENCH_PERF:-}" ]; then
    perf record -F 999 -g -p "$SERVER_PID" -o "$WORK/b5.perf" 2>/dev/null &
    PERF_PID=$!
fi
START=$(date +%s.%N)
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
    --body "$WORK/run5.json" --conns 16 --requests 3000 --label "B5-submit" >/dev/null
j=0
until [ "$(runs_with queued)" = 0 ]; do j=$((j + 1)); [ $j -gt 3000 ] && break; sleep 0.05; done
PLACED=$(date +%s.%N)
j=0
until [ "$(runs_with completed)" = 3000 ]; do j=$((j + 1)); [ $j -gt 3000 ] && break; sleep 0.1; done
END=$(date +%s.%N)
/usr/bin/python3 -c "print('B5 %.0f assignments/s (submit, place, commit, push to 1000 hollow nodes); %.0f runs/s to completed' % (3000 / ($PLACED - $START), 3000 / ($END - $START)))"
perf_report b5 B5 2 15
steal_note "B5"
stop_last 2 # its server and hollow agent
fi

if want "B10 B9"; then
steal_note "the set-up before it" >/dev/null
start_server b10 --sync full --node-timeout 6
SERVER_PID=$(echo $PIDS | awk '{ print $NF }')
taskset -c 1 "$BIN" agent --hollow 10000 --server "$URL" --token "$TOKEN" --name h \
    --listen 127.0.0.1:0 --cpus 4 --task-seconds 600 --log-level warn 2>"$WORK/hollow10.log" &
PIDS="$PIDS $!"
wait_ready 10000 120
sleep 2
T0=$(cpu_ticks "$SERVER_PID")
sleep 10
T1=$(cpu_ticks "$SERVER_PID")
echo "# B10 conditions: 10000 hollow nodes heartbeating every 2 s (--node-timeout 6), 10 s"
/usr/bin/python3 -c "print('B10 %.0f%% of one core for heartbeats (%s of 10000 nodes ready at the end)' % (($T1 - $T0) / $(getconf CLK_TCK) / 10 * 100, '$(ready_nodes)'))"

echo "# B9 conditions: the B10 cluster plus 1000 running runs and 20000 queued 5-rank runs (100000 tasks)"
echo '{"experiment": "bench-b9", "command": ["true"]}' >"$WORK/run9.json"
echo '{"experiment": "bench-b9", "command": ["true"], "compute_target": "empty", "distributed_backend": "pytorch", "process_count_per_node": 5}' >"$WORK/queued9.json"
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
    --body "$WORK/run9.json" --conns 16 --requests 1000 --label "B9-running" >/dev/null
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
    --body "$WORK/queued9.json" --conns 16 --requests 20000 --label "B9-queued" >/dev/null
sleep 2
/usr/bin/python3 -c "
rss = [l for l in open('/proc/$SERVER_PID/status') if l.startswith('VmRSS')][0].split()[1]
import os
if os.environ.get('BENCH_SMAPS'): print(open('/proc/$SERVER_PID/smaps_rollup').read()); os.system('awk \'/^[0-9a-f]+-/ {m=\$6} /^Rss:/ {r[m]+=\$2} END {for (k in r) print r[k], k}\' /proc/$SERVER_PID/smaps | sort -rn | head -8')
print('B9 server RSS %.1f MiB (10000 nodes, %s running runs, %s queued runs of 5 tasks)' % (int(rss) / 1024, '$(runs_with running)', '$(runs_with queued)'))"
steal_note "B10, B9"
stop_last 2 # its server and hollow agent
fi

if want "B12"; then
steal_note "the set-up before it" >/dev/null
# ---- B12: heartbeats under user load ----
B12_SECONDS=${BENCH_B12_SECONDS:-20}
start_server b12 --sync full --node-timeout 6
SERVER_PID=$(echo $PIDS | awk '{ print $NF }')
taskset -c 1 "$BIN" agent --hollow 10000 --server "$URL" --token "$TOKEN" --name h \
    --listen 127.0.0.1:0 --cpus 4 --task-seconds 3600 --heartbeat-stats "$WORK/beats12.txt" \
    --log-level warn 2>"$WORK/hollow12.log" &
HOLLOW_PID=$!
PIDS="$PIDS $HOLLOW_PID"
wait_ready 10000 120
# Eight running runs with 64 KiB of log each, for the readers.
: >"$WORK/logruns.txt"
head -c 65536 /dev/zero | tr '\0' 'x' | fold -w 63 >"$WORK/log.txt"
for i in $(seq 8); do
    api POST /api/v1/runs '{"experiment": "bench-b12-logs", "command": ["true"]}' |
        json 'd["id"] + " " + d["tasks"][0]["id"]' >>"$WORK/logruns.txt"
done
while read -r run task; do
    j=0
    until api GET "/api/v1/runs/$run" | json 'd["status"]' | grep -q running; do
        j=$((j + 1)); [ $j -gt 300 ] && break
        sleep 0.1
    done
    curl -sf -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: text/plain' \
        --data-binary @"$WORK/log.txt" "$URL/api/v1/agent/tasks/$task/logs?offset=0" >/dev/null
done <"$WORK/logruns.txt"
lost() { curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics" |
    awk '$1 == "trainyard_nodes_lost_total" { print $2 }'; }
LOST0=$(lost)
sleep 2
kill -USR1 "$HOLLOW_PID" # the round trips until now (joining, quiet) are left out
curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics" >"$WORK/b12-before.txt"
# Submissions go to a pool without nodes (as in B1): the heartbeats share
# the server with users, not with placements onto the hollow nodes.
echo '{"experiment": "bench", "command": ["true"], "compute_target": "b12-none"}' >"$WORK/run12.json"
echo "# B12 conditions: 10000 hollow nodes heartbeating every 2 s (--node-timeout 6; one hollow" \
     "process, 64 connections) while 32 clients submit flat out (B1's spec, to a pool without" \
     "nodes) and 8 clients read 64 KiB logs of 8 running runs, ${B12_SECONDS} s; round trips" \
     "as the hollow agent sees them (its own queueing included)"
if [ -n "${BENCH_PERF:-}" ]; then
    perf record -F 999 -g -p "$SERVER_PID" -o "$WORK/b12.perf" 2>/dev/null &
    PERF_PID=$!
fi
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
    --body "$WORK/run12.json" --conns 32 --seconds "$B12_SECONDS" --label "# B12 submissions" \
    >"$WORK/b12-submit.txt" &
LOADS=$!
# One process for the eight readers (a connection each): with a process
# each, the hollow agent got a tenth of core 1 and its own queueing was
# most of what B12 measured.
taskset -c 1 "$LOAD" $(while read -r run task; do printf ' --url %s' "$URL/api/v1/runs/$run/logs"; done <"$WORK/logruns.txt") \
    --token "$TOKEN" --conns 8 --seconds "$B12_SECONDS" --label "# B12 log reads" \
    >"$WORK/b12-logs.txt" &
LOADS="$LOADS $!"
for p in $LOADS; do wait "$p"; done
kill -USR1 "$HOLLOW_PID"
perf_report b12 B12 2 15
j=0
until [ "$(wc -l <"$WORK/beats12.txt")" -ge 2 ]; do
    j=$((j + 1)); [ $j -gt 100 ] && break
    sleep 0.1
done
cat "$WORK/b12-submit.txt" "$WORK/b12-logs.txt"
LOST1=$(lost)
curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics" >"$WORK/b12-after.txt"
/usr/bin/python3 - "$WORK/b12-before.txt" "$WORK/b12-after.txt" <<'PY'
import re, sys
# The server's own view: its heartbeat handling time over the window.
def buckets(path):
    out = {}
    for l in open(path):
        m = re.match(r'trainyard_http_request_duration_seconds_bucket\{method="POST",'
                     r'route="/api/v1/nodes/\{name\}/heartbeat",le="([^"]+)"\} (\d+)', l)
        if m:
            out[m.group(1)] = int(m.group(2))
    return out
a, b = buckets(sys.argv[1]), buckets(sys.argv[2])
d = [(k, b[k] - a.get(k, 0)) for k in b]
n = dict(d).get("+Inf", 0)
def q(p):
    for k, c in d:
        if c >= p * n:
            return k
print("# B12 the server's heartbeat handling over the window: %d heartbeats, p50 <= %s s,"
      " p99 <= %s s (histogram bounds)" % (n, q(0.5), q(0.99)))
PY
/usr/bin/python3 - "$WORK/beats12.txt" "$((${LOST1:-0} - ${LOST0:-0}))" "$(ready_nodes)" <<'PY'
import re, sys
line = open(sys.argv[1]).read().splitlines()[1]
m = re.match(r"heartbeats n=(\d+) failed=(\d+) p50=([0-9.]+)ms p90=([0-9.]+)ms p99=([0-9.]+)ms "
             r"max=([0-9.]+)ms", line)
print("B12 heartbeats under user load: p50=%sms p99=%sms max=%sms (n=%s, failed=%s); nodes lost: %s,"
      " %s of 10000 ready at the end" % (m.group(3), m.group(5), m.group(6), m.group(1), m.group(2),
                                        sys.argv[2], sys.argv[3]))
PY
steal_note "B12"
fi
