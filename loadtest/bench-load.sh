#!/usr/bin/env bash
# bench-load.sh is `make bench-load`: a short run of every load scenario
# against a Hearth pipeline started like `make run` with RabbitMQ — two hubs,
# two edges and the TLS tier as separate processes — on free ports, with a
# private RabbitMQ node (deploy/local/rabbitmq.sh). Results go to docs/bench/
# (JSON, HTML reports and SVG charts) and a summary table is printed.
#
# The pipeline is restarted before the idle, chat and fanout scenarios so that
# each starts from fresh processes (idle measures RSS growth from a clean
# edge). Every process this script starts is stopped by its PID.
#
# Environment:
#   BENCH_OUT       where results go (default docs/bench)
#   BENCH_ONLY      space-separated subset of: baseline storm idle chat fanout
#                   ingress (not in the default set: chat in BENCH_INGRESS_ROOMS
#                   rooms (20) at BENCH_INGRESS_RATE publishes/s (3000), with
#                   the edges' ingress batching on and then off)
#   BENCH_AMQP_URL  use this RabbitMQ instead of a private node
#   BENCH_FULL=1    the issue's full sizes and longer runs (about 10 minutes)
#   BIN             where the binaries are (default ./bin, built by make)
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${BIN:-$PWD/bin}
out=${BENCH_OUT:-docs/bench}
only=${BENCH_ONLY:-baseline storm idle chat fanout}
full=${BENCH_FULL:-0}
mkdir -p "$out"
state=$(mktemp -d /tmp/hearth-bench.XXXXXX)
log() { printf 'bench-load: %s\n' "$*" >&2; }
want() { [[ " $only " == *" $1 "* ]]; }

for b in hearth-hub hearth-edge hearth-tls hearth-load; do
	[ -x "$bin/$b" ] || { log "missing $bin/$b (run: make build, then go build -o bin/ ./loadtest/cmd/hearth-load)"; exit 1; }
done

# --- processes -------------------------------------------------------------

pids=()
rmq_dir=""
stop_system() {
	local i pid
	for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
		pid=${pids[$i]}
		kill -TERM "$pid" 2>/dev/null || continue
		for _ in $(seq 1 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		if kill -0 "$pid" 2>/dev/null; then
			log "pid $pid ignored SIGTERM for 10s; killing it"
			kill -KILL "$pid" 2>/dev/null || true
		fi
		wait "$pid" 2>/dev/null || true
	done
	pids=()
}
cleanup() {
	trap - EXIT INT TERM
	stop_system
	if [ -n "$rmq_dir" ]; then
		deploy/local/rabbitmq.sh stop "$rmq_dir" >/dev/null 2>&1 || log "could not stop RabbitMQ in $rmq_dir"
	fi
	rm -rf "$state"
}
trap cleanup EXIT INT TERM

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
free_port() {
	local p
	for _ in $(seq 1 200); do
		p=$((20000 + RANDOM % 20000))
		if port_free "$p" && port_free "$((p + 1))"; then
			echo "$p"
			return
		fi
	done
	log "no free port found"
	exit 1
}

# wait_ok URL NAME: poll until URL answers 200; fail if process NAME exits
# (for example because another program took its port) or after 60s.
wait_ok() {
	local deadline=$((SECONDS + 60)) pid
	pid=$(cat "$state/$2.pid")
	until curl -sf -o /dev/null "$1"; do
		if ! kill -0 "$pid" 2>/dev/null; then
			log "$2 exited during start-up:"
			tail -n 3 "$state/$2.log" >&2 || true
			return 1
		fi
		[ "$SECONDS" -lt "$deadline" ] || { log "$1 not ready in time"; return 1; }
		sleep 0.2
	done
}

# start NAME CMD...: run CMD in the background with its log and pid file.
start() {
	local name=$1
	shift
	"$@" >"$state/$name.log" 2>&1 &
	pids+=($!)
	echo $! >"$state/$name.pid"
}

# extra_edge_args are added to both edges' flags by start_system.
extra_edge_args=()

# The hub's static shard flags exist only in versions with static assignment.
hub_static=0
if "$bin/hearth-hub" -h 2>&1 | grep -q -- '-index'; then hub_static=1; fi

# start_system (re)starts the pipeline on fresh free ports, trying again
# when a port was taken between choosing it and binding it.
start_system() {
	local attempt
	for attempt in 1 2 3; do
		stop_system
		if start_system_once; then
			return
		fi
		log "pipeline did not start (attempt $attempt)"
	done
	exit 1
}

start_system_once() {
	edge1=$(free_port) edge2=$(free_port) tlsp=$(free_port) tlsm=$(free_port) hub0=$(free_port) hub1=$(free_port)
	export AMQP_URL=$amqp HEARTH_JWT_SECRET_FILE=$state/jwt-secret HEARTH_LOG_FORMAT=json HEARTH_LOG_LEVEL=info
	local hubargs0=() hubargs1=()
	if [ "$hub_static" = 1 ]; then hubargs0=(-index 0 -count 2) hubargs1=(-index 1 -count 2); fi
	start hub-0 "$bin/hearth-hub" -id hub-0 "${hubargs0[@]}" -admin-listen "127.0.0.1:$hub0"
	start hub-1 "$bin/hearth-hub" -id hub-1 "${hubargs1[@]}" -admin-listen "127.0.0.1:$hub1"
	# Load runs publish faster than a chat client: lift the per-connection
	# frame rate limit (defaults 50/s, burst 100).
	local edgeargs=(-rate 100000 -rate-burst 100000 "${extra_edge_args[@]}")
	start edge-1 "$bin/hearth-edge" -id edge-1 -listen "127.0.0.1:$edge1" "${edgeargs[@]}"
	start edge-2 "$bin/hearth-edge" -id edge-2 -listen "127.0.0.1:$edge2" "${edgeargs[@]}"
	wait_ok "http://127.0.0.1:$hub0/readyz" hub-0 || return 1
	wait_ok "http://127.0.0.1:$hub1/readyz" hub-1 || return 1
	wait_ok "http://127.0.0.1:$edge1/readyz" edge-1 || return 1
	wait_ok "http://127.0.0.1:$edge2/readyz" edge-2 || return 1
	start tls "$bin/hearth-tls" -listen "127.0.0.1:$tlsp" -edges "http://127.0.0.1:$edge1,http://127.0.0.1:$edge2" \
		-ca-dir "$state/tls" -metrics-listen "127.0.0.1:$tlsm" -health-interval 500ms
	wait_ok "http://127.0.0.1:$tlsm/readyz" tls || return 1
	log "pipeline up: edges :$edge1 :$edge2, TLS :$tlsp, hubs :$hub0 :$hub1 (pids ${pids[*]})"
}

# load NAME ARGS...: one hearth-load run with the common flags.
load() {
	local name=$1
	shift
	log "=== $name: hearth-load $*"
	"$bin/hearth-load" -name "$name" -secret-file "$state/jwt-secret" -out "$out/$name" \
		-watch "hub-0=@$state/hub-0.pid,hub-1=@$state/hub-1.pid,tls=@$state/tls.pid,rabbitmq=$rmq_pid" \
		"$@" || log "$name failed (exit $?); going on"
}

# --- RabbitMQ --------------------------------------------------------------

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$state/jwt-secret"
if [ -n "${BENCH_AMQP_URL:-}" ]; then
	amqp=$BENCH_AMQP_URL
	rmq_pid=$(pgrep -o beam.smp || true)
else
	# Its own directory: the node runs as user rabbitmq, which cannot enter $state.
	rmq_dir=$(mktemp -d /tmp/hearth-bench-rmq.XXXXXX)
	rmq_env=$(deploy/local/rabbitmq.sh start "$rmq_dir") || { log "could not start RabbitMQ"; exit 1; }
	eval "$rmq_env"
	amqp=$HEARTH_TEST_AMQP_URL
	rmq_pid=$(sed -n 's/^NODE_PID=//p' "$rmq_dir/hearth-rabbitmq.env")
fi
[ -n "$rmq_pid" ] || { log "cannot find RabbitMQ's PID"; exit 1; }
log "RabbitMQ at $amqp (pid $rmq_pid); results in $out"

if [ "$full" = 1 ]; then
	dur=60s hold=60s storm=10000 tlsstorm=9000 steps=14
else
	dur=30s hold=30s storm=10000 tlsstorm=5000 steps=10
fi

# --- scenarios -------------------------------------------------------------

if want baseline; then
	# RabbitMQ alone, before any Hearth process runs: pipelined confirms on
	# a classic transient queue (the ceiling), quorum persistent (like the
	# ingress shard queues), and one publish at a time (like one client).
	rmq_watch="rabbitmq=$rmq_pid"
	for v in "classic:false:4:64:amqp-classic" "quorum:true:4:64:amqp-quorum" "classic:false:1:1:amqp-sync"; do
		IFS=: read -r qt persistent pubs window name <<<"$v"
		log "=== $name"
		"$bin/hearth-load" -scenario amqp-baseline -name "$name" -amqp-url "$amqp" -amqp-queue-type "$qt" \
			-amqp-persistent="$persistent" -amqp-publishers "$pubs" -amqp-window "$window" -duration 8s \
			-watch "$rmq_watch" -out "$out/$name" || log "$name failed; going on"
	done
fi

if want storm; then
	start_system
	load storm-edges -scenario storm -conns "$storm" -url "ws://127.0.0.1:$edge1/ws,ws://127.0.0.1:$edge2/ws" \
		-edge-pid-files "$state/edge-1.pid,$state/edge-2.pid"
	# Let the edges and hubs settle the disconnects before the next storm.
	sleep 3
	load storm-tls -scenario storm -conns "$tlsstorm" -url "wss://127.0.0.1:$tlsp/ws" -ca "$state/tls/ca.pem" \
		-edge-pid-files "$state/edge-1.pid,$state/edge-2.pid"
fi

if want idle; then
	start_system
	load idle -scenario idle -conns 10000 -rooms 100 -duration "$hold" -ramp 10s -url "ws://127.0.0.1:$edge1/ws" \
		-edge-pid-files "$state/edge-1.pid"
fi

if want chat; then
	start_system
	load chat -scenario chat -rooms 500 -members 10 -rate 1000 -duration "$dur" -ramp 10s \
		-url "ws://127.0.0.1:$edge1/ws,ws://127.0.0.1:$edge2/ws" -edge-pid-files "$state/edge-1.pid,$state/edge-2.pid"
fi

if want fanout; then
	# As the issue puts it: steps up until a loss or p99 > 100 ms.
	start_system
	load fanout -scenario fanout -members 10000 -conns-per-user 100 -publishers 10 -step-start 5 -step-factor 1.6 \
		-step-duration 5s -max-steps "$steps" -ramp 10s -url "ws://127.0.0.1:$edge1/ws" -edge-pid-files "$state/edge-1.pid"
	# The throughput ceiling: the same steps, judged on loss only (p99 up to 5 s).
	start_system
	load fanout-max -scenario fanout -members 10000 -conns-per-user 100 -publishers 10 -step-start 5 -step-factor 1.6 \
		-step-duration 5s -max-steps "$steps" -step-p99 5s -ramp 10s -url "ws://127.0.0.1:$edge1/ws" -edge-pid-files "$state/edge-1.pid"
fi

if want ingress; then
	# The broker hop: many small rooms at a high rate, the edges batching
	# their ingress frames (the default) and not (-ingress-max-delay=-1ms).
	# Few rooms, so that each shard is busy enough for frames to meet.
	rate=${BENCH_INGRESS_RATE:-3000} rooms=${BENCH_INGRESS_ROOMS:-20}
	for mode in batched unbatched; do
		extra_edge_args=()
		[ "$mode" = unbatched ] && extra_edge_args=(-ingress-max-delay=-1ms)
		start_system
		load "ingress-$mode" -scenario chat -rooms "$rooms" -members 2 -rate "$rate" -duration 20s -ramp 5s \
			-url "ws://127.0.0.1:$edge1/ws,ws://127.0.0.1:$edge2/ws" -edge-pid-files "$state/edge-1.pid,$state/edge-2.pid"
	done
	extra_edge_args=()
fi

stop_system
echo
"$bin/hearth-load" summary "$out"/*.json
