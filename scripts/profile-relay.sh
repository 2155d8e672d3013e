#!/bin/sh
# Profiles the relay process under one bench workload, the way docs/benchmarks.md
# quotes it: the C backend, ./relay and the relayed backend of the bench's `relay`
# path, then either a V8 CPU profile (summarised by profile-top) or strace -c counts.
# With cpu, the relayed backend (the library's side) is profiled too, into
# $out/service/.
#
#   scripts/profile-relay.sh cpu|strace bulk|conns [PREWARM]
#
# Needs `npm run bench -- --smoke` to have run once (it builds bench-results/benchtool)
# and, for strace, `apt-get install strace`. Stops only the processes it started.
set -eu
tool=${1:?cpu or strace}
load=${2:?bulk or conns}
prewarm=${3:-0}
root=$(dirname "$(readlink -f "$0")")/..
cd "$root"
bt=bench-results/benchtool
out=bench-results/profile-$tool-$load
rm -rf "$out" && mkdir -p "$out"
[ -x "$bt" ] || { echo "build benchtool first: npm run bench -- --smoke" >&2; exit 1; }

pids=""
cleanup() { for p in $pids; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT INT TERM

BENCHTOOL_ALARM_S=0 "$bt" server > "$out/backend.out" & pids="$pids $!"
port=$(( 20000 + $$ % 10000 ))
flags="--bind 127.0.0.1 --max-clients 20000 --max-pending 20000 --max-tunnels 20000 --log-level warn"
if [ "$tool" = cpu ]; then
  node --cpu-prof --cpu-prof-dir="$out" dist/src/cli/relay.js $port $flags 2> "$out/relay.err" &
else
  node dist/src/cli/relay.js $port $flags 2> "$out/relay.err" &
fi
relay=$!; pids="$relay $pids"
sleep 0.5
warm=""; [ "$prewarm" -gt 0 ] && warm="--prewarm $prewarm"
if [ "$tool" = cpu ]; then
  node --cpu-prof --cpu-prof-dir="$out/service" dist/scripts/relayed-backend.js 127.0.0.1 $port $warm > "$out/service.out" & service=$!
else
  node dist/scripts/relayed-backend.js 127.0.0.1 $port $warm > "$out/service.out" & service=$!
fi
pids="$service $pids"
for _ in 1 2 3 4 5 6 7 8 9 10; do grep -q established "$out/service.out" && break; sleep 0.5; done
public=$(sed -n 's/^established relay address: .*:\([0-9]*\)$/\1/p' "$out/service.out" | head -1)
[ -n "$public" ] || { echo "the relayed backend did not register" >&2; exit 1; }

work() {
  if [ "$load" = bulk ]; then
    "$bt" tput 127.0.0.1 "$public" down 1073741824 1
    "$bt" tput 127.0.0.1 "$public" up 1073741824 1
  else
    "$bt" conns 127.0.0.1 "$public" 50 5
  fi
}
# Warm the JIT first, as the bench does.
"$bt" tput 127.0.0.1 "$public" down 67108864 1 > /dev/null
"$bt" conns 127.0.0.1 "$public" 50 1 > /dev/null
if [ "$tool" = strace ]; then
  # The master forks the worker that relays: trace the worker.
  worker=$(pgrep -P $relay | head -1)
  timeout 120 strace -c -f -p $worker -o "$out/strace.txt" 2> /dev/null & st=$!
  sleep 1
  work
  sleep 0.5
  kill -INT $st; wait $st || true
  head -20 "$out/strace.txt"
else
  work
  kill -TERM $service $relay
  wait $service $relay || true   # a SIGTERM exit writes the profile
  # The master and its worker each write one; the worker's, which did the work, is the larger.
  node dist/scripts/profile-top.js "$(ls -S "$out"/*.cpuprofile | head -1)" 30
  echo "--- relayed service (the library) ---"
  node dist/scripts/profile-top.js "$(ls -S "$out"/service/*.cpuprofile | head -1)" 30
fi
