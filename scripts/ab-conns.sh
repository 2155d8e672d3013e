#!/bin/bash
# CPU per short connection of two builds measured at the same time, under the same
# load: the relay and relayed backend of checkout A and of checkout B, each under its
# own `benchtool conns` (25 workers), started together for every round. On a shared,
# loaded machine the paths of one round see the same noise, so the per-round ratio B/A
# is steadier than figures taken one after the other (docs/benchmarks.md, issue 21).
#
#   scripts/ab-conns.sh DIR_A DIR_B [ROUNDS=7] [SECONDS=3]
#
# Each DIR is a built checkout (npm run build). Needs bench-results/benchtool here
# (npm run bench -- --smoke builds it). OPTS_A/OPTS_B: NODE_OPTIONS for each relay.
# Prints one line per round: µs of CPU per connection of relay A, relay B, service A,
# service B, and the ratios B/A. Stops only the processes it started.
set -eu
A=$(readlink -f "${1:?checkout A}"); B=$(readlink -f "${2:?checkout B}")
rounds=${3:-7}; secs=${4:-3}
root=$(dirname "$(readlink -f "$0")")/..
bt=$root/bench-results/benchtool
[ -x "$bt" ] || { echo "build benchtool first: npm run bench -- --smoke" >&2; exit 1; }
out=$(mktemp -d)
pids=""
cleanup() {
  for p in $pids; do
    for c in $(pgrep -P "$p" 2>/dev/null); do kill "$c" 2>/dev/null || true; done
    kill "$p" 2>/dev/null || true
  done
  rm -rf "$out"
}
trap cleanup EXIT INT TERM
BENCHTOOL_ALARM_S=0 "$bt" server > "$out/backend.out" & pids="$pids $!"
flags="--bind 127.0.0.1 --max-clients 20000 --max-pending 20000 --max-tunnels 20000 --log-level warn"
start() { # checkout port name node-options
  (cd "$1" && NODE_OPTIONS="$4" exec node dist/src/cli/relay.js "$2" $flags 2> "$out/$3.relay.err") &
  pids="$! $pids"; eval "relay_$3=$!"
  for _ in $(seq 50); do grep -q . "$out/$3.relay.err" 2>/dev/null && break; (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null && break; sleep 0.1; done
  (cd "$1" && exec node dist/scripts/relayed-backend.js 127.0.0.1 "$2" > "$out/$3.service.out") &
  pids="$! $pids"; eval "service_$3=$!"
}
base=$(( 20000 + $$ % 4000 ))
start "$A" $base a "${OPTS_A:-}"
start "$B" $((base + 700)) b "${OPTS_B:-}"
public() { for _ in $(seq 50); do grep -q established "$out/$1.service.out" && break; sleep 0.1; done; sed -n 's/^established relay address: .*:\([0-9]*\)$/\1/p' "$out/$1.service.out" | head -1; }
pa=$(public a); pb=$(public b)
[ -n "$pa" ] && [ -n "$pb" ] || { echo "a relayed backend did not register" >&2; exit 1; }
# The master forks the worker that relays: its CPU is the relay's.
wa=$(pgrep -P "$relay_a" | head -1); wb=$(pgrep -P "$relay_b" | head -1)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
both() { "$bt" conns 127.0.0.1 "$pa" "$1" "$2" > "$out/ca" & local j=$!; "$bt" conns 127.0.0.1 "$pb" "$1" "$2" > "$out/cb"; wait $j; }
both 50 2 # warm the JIT of both, as the bench does
hz=$(getconf CLK_TCK)
for _ in $(seq "$rounds"); do
  a1=$(ticks "$wa"); b1=$(ticks "$wb"); c1=$(ticks "$service_a"); d1=$(ticks "$service_b")
  both 25 "$secs"
  a2=$(ticks "$wa"); b2=$(ticks "$wb"); c2=$(ticks "$service_a"); d2=$(ticks "$service_b")
  na=$(sed 's/.*"ok":\([0-9]*\).*/\1/' "$out/ca"); nb=$(sed 's/.*"ok":\([0-9]*\).*/\1/' "$out/cb")
  awk -v hz="$hz" -v na="$na" -v nb="$nb" -v a=$((a2 - a1)) -v b=$((b2 - b1)) -v c=$((c2 - c1)) -v d=$((d2 - d1)) 'BEGIN {
    k = 1e6 / hz
    printf "relay A %4.0f B %4.0f  service A %4.0f B %4.0f  B/A relay %.3f service %.3f  (connections %d %d)\n", a*k/na, b*k/nb, c*k/na, d*k/nb, (b/nb)/(a/na), (d/nb)/(c/na), na, nb
  }'
done
