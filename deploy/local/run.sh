#!/usr/bin/env bash
# run.sh is `make run`: the whole pipeline on this machine.
#
# With a RabbitMQ reachable at AMQP_URL (default amqp://guest:guest@127.0.0.1:5672/)
# it starts the TLS tier, two edges and two hubs as separate processes; with
# none it starts hearth-standalone, one process on the embedded in-process
# broker, and says so. Either way clients connect to wss://localhost:8443/ws
# and trust .hearth/tls/ca.pem. Ctrl-C stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/../.."

bin=${BIN:-$PWD/bin}
state=${HEARTH_STATE_DIR:-$PWD/.hearth}
amqp_url=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/}
tls_port=${HEARTH_TLS_PORT:-8443}
mkdir -p "$state"

# A development JWT secret, made once and kept in .hearth/jwt-secret.
secret_file=$state/jwt-secret
if [ ! -s "$secret_file" ]; then
	head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file"
	chmod 600 "$secret_file"
fi
export HEARTH_JWT_SECRET_FILE=$secret_file
export HEARTH_LOG_FORMAT=${HEARTH_LOG_FORMAT:-console}

# reachable HOST PORT: true when something accepts TCP connections there.
reachable() { timeout 2 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }

hostport=${amqp_url#*://}
hostport=${hostport#*@}
hostport=${hostport%%/*}
amqp_host=${hostport%:*}
amqp_port=${hostport##*:}
[ "$amqp_port" = "$hostport" ] && amqp_port=5672

pids=()
stop_all() {
	trap - INT TERM EXIT
	if [ ${#pids[@]} -gt 0 ]; then
		echo "run.sh: stopping ${#pids[@]} process(es)" >&2
		# Front to back: the TLS tier, edges, hubs (reverse start order).
		for ((i = ${#pids[@]} - 1; i >= 0; i--)); do
			kill -TERM "${pids[$i]}" 2>/dev/null || true
			wait "${pids[$i]}" 2>/dev/null || true
		done
	fi
}
trap stop_all INT TERM EXIT

start() {
	"$@" &
	pids+=($!)
}

if reachable "$amqp_host" "$amqp_port"; then
	echo "run.sh: RabbitMQ reachable at $amqp_host:$amqp_port — starting 2 hubs, 2 edges and the TLS tier as separate processes" >&2
	export AMQP_URL=$amqp_url
	start "$bin/hearth-hub" -id hub-0 -admin-listen 127.0.0.1:9091
	start "$bin/hearth-hub" -id hub-1 -admin-listen 127.0.0.1:9092
	start "$bin/hearth-edge" -id edge-1 -listen 127.0.0.1:8081
	start "$bin/hearth-edge" -id edge-2 -listen 127.0.0.1:8082
	start "$bin/hearth-tls" -listen ":$tls_port" -edges http://127.0.0.1:8081,http://127.0.0.1:8082 -ca-dir "$state/tls"
else
	echo "run.sh: no RabbitMQ at $amqp_host:$amqp_port — using the embedded in-process broker (one process; set AMQP_URL to use RabbitMQ)" >&2
	start "$bin/hearth-standalone" -tls-listen ":$tls_port" -edge-listen 127.0.0.1:8081 -ca-dir "$state/tls"
fi

cat >&2 <<EOF
  Hearth is starting: wss://localhost:$tls_port/ws   (CA certificate: $state/tls/ca.pem)

  Chat from two terminals:
    bin/hearth-chat chat -url wss://localhost:$tls_port/ws -ca $state/tls/ca.pem -secret-file $secret_file -user alice -room general
    bin/hearth-chat chat -url wss://localhost:$tls_port/ws -ca $state/tls/ca.pem -secret-file $secret_file -user bob -room general

  Ctrl-C stops everything.

EOF
wait -n "${pids[@]}" || true
echo "run.sh: a process exited; stopping the rest" >&2
