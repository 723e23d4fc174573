#!/bin/sh
# make bench-peers: trainyard beside Debian's Slurm (22.05 on bookworm) on
# this machine, in one run, each figure measured for trainyard and then for
# Slurm. Prints a `#` conditions line, then P1..P4, each with trainyard's
# figure, Slurm's and the ratio (how many times better trainyard is: its
# rate / Slurm's, or Slurm's latency / its latency). Installs what is
# missing (apt-get), runs every daemon in the foreground under setsid with
# its state in a temporary directory, on 127.0.0.1 only, and stops them by
# pid on exit. The server side (trainyard's server; slurmctld, slurmrestd,
# munged) is pinned to core 0, the node side (trainyard's agent, slurmd)
# and the clients to core 1. Benchmarks only print.
set -eu
cd "$(dirname "$0")/.."
BIN=$PWD/bin/trainyard
LOAD=$PWD/build/bench/load
SECONDS_EACH=${BENCH_SECONDS:-5}
N_LATENCY=${PEERS_LATENCY_N:-50}
N_BURST=${PEERS_BURST_N:-1000}
CPUS=64
PACKAGES="munge slurmctld slurmd slurmrestd slurm-client slurm-wlm-jwt-plugin"
if [ "$(id -u)" != 0 ]; then
    echo "bench-peers: needs root (apt-get, slurmd and slurmctld as root, slurmrestd -u nobody)" >&2
    exit 1
fi

# ---- packages (not in .ci/install-deps: make test does not need them) ----
missing=""
for p in $PACKAGES; do
    dpkg-query -W -f '${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' ||
        missing="$missing $p"
done
if [ -n "$missing" ]; then
    echo "# bench-peers: installing$missing" >&2
    # Without systemd the packages' scripts would start the daemons through
    # invoke-rc.d; a policy-rc.d that says no keeps them stopped.
    own_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod 755 /usr/sbin/policy-rc.d
        own_policy=1
    fi
    # shellcheck disable=SC2086
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2 ||
        { apt-get update -q >&2 &&
          DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $missing >&2; }
    [ -n "$own_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

WORK=$(mktemp -d /tmp/trainyard-peers.XXXXXX)
# slurmrestd runs as nobody and reads slurm.conf here; tasks write their
# start times into ts/.
chmod 755 "$WORK"
mkdir -p "$WORK/ts" "$WORK/munge" "$WORK/munge-run" "$WORK/ctld" "$WORK/slurmd" "$WORK/log"
chmod 1777 "$WORK/ts"
chmod 700 "$WORK/munge" "$WORK/ctld"
PIDS=""
cleanup() {
    if [ -n "${SLURM_UP:-}" ]; then
        scancel --quiet --user root 2>/dev/null || true
        i=0
        while [ -n "$(squeue -h -o %i 2>/dev/null)" ] && [ $i -lt 50 ]; do
            i=$((i + 1)); sleep 0.1
        done
    fi
    # The last started first: slurmrestd and slurmd before slurmctld, munged last.
    for p in $(echo "$PIDS" | tr ' ' '\n' | sed '1!G;h;$!d'); do
        kill "$p" 2>/dev/null || true
        i=0
        while kill -0 "$p" 2>/dev/null && [ $i -lt 50 ]; do i=$((i + 1)); sleep 0.1; done
        kill -9 "$p" 2>/dev/null || true
        wait "$p" 2>/dev/null || true
    done
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

started() { # the last background command's pid, for cleanup
    PIDS="$PIDS $!"
    LAST_PID=$!
}

# ---- trainyard ----
start_server() { # $1 = name
    mkdir -p "$WORK/$1"
    taskset -c 0 "$BIN" server --listen 127.0.0.1:0 --data "$WORK/$1" --log-level warn --sync full \
        2>"$WORK/log/$1.log" &
    started
    i=0
    while [ ! -f "$WORK/$1/server.url" ]; do
        i=$((i + 1)); [ $i -gt 100 ] && { echo "bench-peers: server did not start" >&2; exit 1; }
        sleep 0.1
    done
    URL=$(cat "$WORK/$1/server.url")
    TOKEN_FILE=$WORK/$1/admin.token
    TOKEN=$(cat "$TOKEN_FILE")
}
ty_metric() { # NAME{labels}
    curl -sf -H "Authorization: Bearer $TOKEN" "$URL/metrics" | awk -v m="$1" '$1 == m { print $2 }'
}

# ---- Slurm: munged, slurmctld, slurmd and slurmrestd ----
ports=$(/usr/bin/python3 -c '
import socket
s = [socket.socket() for _ in range(3)]
for x in s: x.bind(("127.0.0.1", 0))
print(*[x.getsockname()[1] for x in s])')
CTLD_PORT=${ports%% *}; ports=${ports#* }
SLURMD_PORT=${ports%% *}
REST_PORT=${ports#* }
REST=http://127.0.0.1:$REST_PORT
HOST=$(hostname -s)

head -c 1024 /dev/urandom >"$WORK/munge/munge.key"
chmod 600 "$WORK/munge/munge.key"
head -c 32 /dev/urandom >"$WORK/ctld/jwt_hs256.key"
chmod 600 "$WORK/ctld/jwt_hs256.key"
export SLURM_CONF="$WORK/slurm.conf"
cat >"$SLURM_CONF" <<EOF
ClusterName=peers
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
CommunicationParameters=NoCtldInAddrAny,NoInAddrAny
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket=$WORK/munge-run/munge.sock
AuthAltTypes=auth/jwt
AuthAltParameters=jwt_key=$WORK/ctld/jwt_hs256.key
CredType=cred/munge
StateSaveLocation=$WORK/ctld
SlurmdSpoolDir=$WORK/slurmd
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/log/slurmctld.log
SlurmdLogFile=$WORK/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
SlurmdParameters=config_overrides
MpiDefault=none
ReturnToService=2
MaxJobCount=100000
MinJobAge=5
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=$CPUS State=UNKNOWN
PartitionName=run Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
PartitionName=queue Nodes=$HOST MaxTime=INFINITE State=DOWN
EOF
chmod 644 "$SLURM_CONF"

taskset -c 0 setsid munged -F --key-file="$WORK/munge/munge.key" \
    --socket="$WORK/munge-run/munge.sock" --pid-file="$WORK/munge/munged.pid" \
    --log-file="$WORK/log/munged.log" --seed-file="$WORK/munge/munged.seed" \
    >"$WORK/log/munged.out" 2>&1 </dev/null &
started
i=0
until [ -S "$WORK/munge-run/munge.sock" ]; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "bench-peers: munged did not start" >&2; exit 1; }
    sleep 0.1
done
taskset -c 0 setsid slurmctld -D -i >"$WORK/log/slurmctld.out" 2>&1 </dev/null &
started
taskset -c 1 setsid slurmd -D >"$WORK/log/slurmd.out" 2>&1 </dev/null &
started
i=0
until sinfo -h -p run -o %t 2>/dev/null | grep -q idle; do
    i=$((i + 1))
    [ $i -gt 200 ] && { echo "bench-peers: slurmd did not register" >&2; tail "$WORK"/log/*.log >&2; exit 1; }
    sleep 0.1
done
SLURM_UP=1
SLURM_JWT=daemon taskset -c 0 setsid slurmrestd -u nobody -s openapi/v0.0.38 -a rest_auth/jwt \
    "127.0.0.1:$REST_PORT" >"$WORK/log/slurmrestd.out" 2>&1 </dev/null &
started
JWT=$(scontrol token username=root lifespan=7200 | sed -n 's/^SLURM_JWT=//p')
i=0
until curl -sf -H "X-SLURM-USER-NAME: root" -H "X-SLURM-USER-TOKEN: $JWT" \
        "$REST/slurm/v0.0.38/ping" >/dev/null 2>&1; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "bench-peers: slurmrestd did not start" >&2; exit 1; }
    sleep 0.1
done
SLURM_HEADERS="X-SLURM-USER-NAME: root"
slurm_job() { # PARTITION FILE: a submission of `true`
    printf '{"job": {"name": "peers", "partition": "%s", "current_working_directory": "%s", "environment": {"PATH": "/bin:/usr/bin"}, "standard_output": "/dev/null"}, "script": "#!/bin/sh\\ntrue\\n"}\n' \
        "$1" "$WORK/ts" >"$2"
}
slurm_left() { squeue -h -p "$1" -o %i | wc -l; }

echo "# bench-peers: $(nproc) cores, $(uname -m), trainyard $(git describe --always --dirty 2>/dev/null)" \
     "vs Slurm $(slurmctld -V | cut -d' ' -f2) (batch_sched_delay=0, no accounting, one node of" \
     "$CPUS CPUs); server side on core 0, node side and clients on core 1;" \
     "${SECONDS_EACH}s per rate; load: $(cut -d' ' -f1-3 /proc/loadavg);" \
     "ratio = how many times better trainyard is; $(date -u +%Y-%m-%dT%H:%MZ)"

# ---- P1: REST submissions/s, 1 and 32 clients, nothing to run them ----
# trainyard: B1's server (no nodes, synchronous=full); Slurm: a partition
# that is down, so jobs stay pending (cancelled afterwards).
start_server p1
P1_PID=$LAST_PID
echo '{"experiment": "peers", "command": ["true"]}' >"$WORK/p1.json"
slurm_job queue "$WORK/p1-slurm.json"
p1_line=""
for conns in 1 32; do
    t=$(taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
        --body "$WORK/p1.json" --conns $conns --seconds "$SECONDS_EACH" --label t)
    s=$(taskset -c 1 "$LOAD" --url "$REST/slurm/v0.0.38/job/submit" --method POST \
        --header "$SLURM_HEADERS" --header "X-SLURM-USER-TOKEN: $JWT" \
        --body "$WORK/p1-slurm.json" --conns $conns --seconds "$SECONDS_EACH" --label s)
    p1_line="$p1_line$(echo "$t $s" | /usr/bin/python3 -c '
import re, sys
t, s = sys.stdin.read().split(" s ")
def f(x): return [float(v) for v in re.findall(r"([0-9.]+) req/s p50=([0-9.]+)ms p95=[0-9.]+ms p99=([0-9.]+)ms", x)[0]]
def errs(x): return re.search(r"err=(\d+)", x).group(1)
(tr, tp50, tp99), (sr, sp50, sp99) = f(t), f(s)
print("%s clients: trainyard %.0f/s (p99 %.1f ms, err %s), Slurm %.0f/s (p99 %.1f ms, err %s), ratio %.1f; "
      % (sys.argv[1], tr, tp99, errs(t), sr, sp99, errs(s), tr / sr), end="")' $conns)"
done
echo "P1 REST submissions/s, ${SECONDS_EACH}s each: ${p1_line%; }"
kill "$P1_PID"
wait "$P1_PID" 2>/dev/null || true
scancel --quiet --partition queue
i=0
until [ "$(slurm_left queue)" = 0 ]; do i=$((i + 1)); [ $i -gt 600 ] && break; sleep 0.1; done

# ---- a trainyard server with one real agent, for P2-P4 ----
start_server p2
taskset -c 1 "$BIN" agent --server "$URL" --token-file "$TOKEN_FILE" --name peers-node \
    --listen 127.0.0.1:0 --work "$WORK/agent" --cpus $CPUS --log-level warn \
    2>"$WORK/log/agent.log" &
started
i=0
until curl -sf -H "Authorization: Bearer $TOKEN" "$URL/api/v1/nodes/peers-node" 2>/dev/null |
        grep -q '"state":"ready"'; do
    i=$((i + 1)); [ $i -gt 100 ] && { echo "bench-peers: agent did not register" >&2; exit 1; }
    sleep 0.1
done

ratio_line() { # LABEL "T50 T99 [T50 T99]" "S50 S99 [S50 S99]": latencies, Slurm / trainyard
    /usr/bin/python3 -c '
import sys
label, t, s = sys.argv[1], [float(x) for x in sys.argv[2].split()], [float(x) for x in sys.argv[3].split()]
parts = []
for i, what in ((0, "to start"), (2, "round trip")):
    if i < len(t):
        parts.append("%s p50/p99: trainyard %.1f/%.1f ms, Slurm %.1f/%.1f ms, ratio %.1f/%.1f"
                     % (what, t[i], t[i + 1], s[i], s[i + 1], s[i] / t[i], s[i + 1] / t[i + 1]))
print(label + "; ".join(parts))' "$1" "$2" "$3"
}

# ---- P2: REST submit -> the job's command starts ----
t=$(taskset -c 1 /usr/bin/python3 bench/peers.py p2 trainyard "$URL" "$TOKEN_FILE" "$WORK/ts" \
    "$N_LATENCY" 2>"$WORK/b2.txt")
s=$(taskset -c 1 /usr/bin/python3 bench/peers.py p2 slurm "$REST" "$JWT" "$WORK/ts" "$N_LATENCY")
echo "$(ratio_line "P2 REST submit->start, $N_LATENCY jobs one after another (POST to the command's own clock), " \
    "$t" "$s"); trainyard's B2 (created_at->started_at) p50/p99 $(tr ' ' / <"$WORK/b2.txt") ms"

# ---- P3: the command line: trainyard submit --follow against srun ----
t=$(taskset -c 1 /usr/bin/python3 bench/peers.py p3 trainyard "$BIN" "$URL" "$TOKEN_FILE" "$N_LATENCY")
s=$(taskset -c 1 /usr/bin/python3 bench/peers.py p3 slurm "$N_LATENCY")
ratio_line "P3 CLI (trainyard submit --command --follow vs srun, $N_LATENCY one after another), " "$t" "$s"

# ---- P4: a burst of trivial jobs over REST (16 clients) until all are done ----
echo '{"experiment": "peers-p4", "command": ["true"]}' >"$WORK/p4.json"
slurm_job run "$WORK/p4-slurm.json"
before=$(ty_metric 'trainyard_runs{status="completed"}')
t0=$(date +%s.%N)
taskset -c 1 "$LOAD" --url "$URL/api/v1/runs" --token "$TOKEN" --method POST \
    --body "$WORK/p4.json" --conns 16 --requests "$N_BURST" --label t >/dev/null
i=0
until [ "$(ty_metric 'trainyard_runs{status="completed"}')" -ge $((before + N_BURST)) ]; do
    i=$((i + 1)); [ $i -gt 6000 ] && { echo "bench-peers: trainyard's burst did not finish" >&2; break; }
    sleep 0.05
done
t1=$(date +%s.%N)
taskset -c 1 "$LOAD" --url "$REST/slurm/v0.0.38/job/submit" --method POST \
    --header "$SLURM_HEADERS" --header "X-SLURM-USER-TOKEN: $JWT" \
    --body "$WORK/p4-slurm.json" --conns 16 --requests "$N_BURST" --label s >/dev/null
i=0
until [ "$(slurm_left run)" = 0 ]; do
    i=$((i + 1)); [ $i -gt 6000 ] && { echo "bench-peers: Slurm's burst did not finish" >&2; break; }
    sleep 0.05
done
t2=$(date +%s.%N)
/usr/bin/python3 -c "
t, s = $N_BURST / ($t1 - $t0), $N_BURST / ($t2 - $t1)
print('P4 burst of $N_BURST jobs of \`true\` over REST (16 clients) until all are done: trainyard %.0f jobs/s (%.1f s), Slurm %.0f jobs/s (%.1f s), ratio %.1f' % (t, $t1 - $t0, s, $t2 - $t1, t / s))"
echo "# bench-peers: load at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
