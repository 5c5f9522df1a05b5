#!/usr/bin/env bash
# rabbitmq.sh runs a private RabbitMQ node for Hearth's tests (and for hand
# testing), next to any system RabbitMQ, with all of its state under one
# directory.
#
#   deploy/local/rabbitmq.sh start DIR   start a node with its state in DIR and
#                                        print `export` lines for the tests
#   deploy/local/rabbitmq.sh env DIR     print the `export` lines again
#   deploy/local/rabbitmq.sh stop DIR    stop that node and remove DIR
#
# Typical use (what `make test` does):
#
#   eval "$(deploy/local/rabbitmq.sh start /tmp/hearth-rmq)"
#   go test -race ./...
#   deploy/local/rabbitmq.sh stop /tmp/hearth-rmq
#
# start prints, on stdout and nothing else:
#
#   export HEARTH_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:5700/'
#   export HEARTH_TEST_RABBITMQ_NODE='hearth-test-5700@localhost'
#
# The node gets the first free AMQP port from 5700 up, distribution port
# AMQP+20000, node name hearth-test-PORT@localhost, no plugins, and listens on
# 127.0.0.1 only. It runs as user rabbitmq (as Debian's scripts do) with HOME
# /var/lib/rabbitmq, so it shares that Erlang cookie: `rabbitmqctl -n NODE ...`
# run as root (Debian's wrapper switches to rabbitmq) or as rabbitmq works.
# Debian's rabbitmq-server package is installed when missing and we are root.
# Progress and errors go to stderr. stop never signals anything but the PIDs
# recorded by start (after checking they still are that node).
set -euo pipefail

readonly rmq_bin=/usr/lib/rabbitmq/bin
readonly rmq_home=/var/lib/rabbitmq
readonly first_port=5700
readonly last_port=5799
readonly dist_offset=20000
readonly start_timeout=60
readonly stop_timeout=30
readonly state_file=hearth-rabbitmq.env

log() { printf 'rabbitmq.sh: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	cat >&2 <<-'EOF'
		usage: rabbitmq.sh start DIR | env DIR | stop DIR
		  start  start a private RabbitMQ node with its state in DIR; prints export lines
		  env    print the export lines of the node started in DIR
		  stop   stop the node started in DIR and remove DIR
	EOF
	exit 2
}

# run_as is the command prefix that runs a program as user rabbitmq with the
# node's HOME, and so with its Erlang cookie.
run_as=(env HOME="$rmq_home")
if [ "$(id -u)" = 0 ]; then
	run_as+=(setpriv --reuid=rabbitmq --regid=rabbitmq --init-groups)
fi

ctl() {
	local node=$1
	shift
	"${run_as[@]}" "$rmq_bin/rabbitmqctl" -n "$node" "$@"
}

# port_busy reports whether something listens on TCP port $1.
port_busy() {
	local p=$1
	if command -v ss >/dev/null 2>&1; then
		[ -n "$(ss -Htln "sport = :$p" 2>/dev/null)" ] && return 0
	fi
	(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null
}

epmd_running() { epmd -names >/dev/null 2>&1; }

# node_registered reports whether an Erlang node named $1 (short name) is
# registered with epmd, for example a node whose app was stopped.
node_registered() {
	epmd -names 2>/dev/null | grep -q "^name $1 at port "
}

ensure_installed() {
	if [ -x "$rmq_bin/rabbitmq-server" ]; then
		return
	fi
	if [ "$(id -u)" != 0 ]; then
		die "RabbitMQ is not installed ($rmq_bin/rabbitmq-server missing); install Debian's rabbitmq-server package (as root: apt-get install rabbitmq-server)"
	fi
	log "installing Debian's rabbitmq-server package"
	# Keep the package's own service from starting during the install: we
	# only want our private node.
	local policy=/usr/sbin/policy-rc.d made_policy=0
	if [ ! -e "$policy" ]; then
		printf '#!/bin/sh\nexit 101\n' >"$policy"
		chmod 755 "$policy"
		made_policy=1
	fi
	local rc=0
	{
		DEBIAN_FRONTEND=noninteractive apt-get update -q &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends rabbitmq-server
	} >&2 || rc=$?
	if [ "$made_policy" = 1 ]; then
		rm -f "$policy"
	fi
	[ "$rc" = 0 ] || die "apt-get install rabbitmq-server failed (exit $rc)"
	[ -x "$rmq_bin/rabbitmq-server" ] || die "rabbitmq-server installed but $rmq_bin/rabbitmq-server is missing"
}

# read_state loads the state file of DIR into the st_* variables.
read_state() {
	local dir=$1 key value
	st_node='' st_port='' st_dist='' st_launcher='' st_pid='' st_epmd=0
	while IFS='=' read -r key value; do
		case $key in
		NODE) st_node=$value ;;
		PORT) st_port=$value ;;
		DIST_PORT) st_dist=$value ;;
		LAUNCHER_PID) st_launcher=$value ;;
		NODE_PID) st_pid=$value ;;
		EPMD_STARTED) st_epmd=$value ;;
		esac
	done <"$dir/$state_file"
	[ -n "$st_node" ] && [ -n "$st_port" ] || die "$dir/$state_file is incomplete"
}

print_env() {
	printf "export HEARTH_TEST_AMQP_URL='amqp://guest:guest@127.0.0.1:%s/'\n" "$st_port"
	printf "export HEARTH_TEST_RABBITMQ_NODE='%s'\n" "$st_node"
}

# is_our_process reports whether PID $1 is alive and is (part of) the node
# named $2, judged by its environment, so a recycled PID is never signalled.
is_our_process() {
	local pid=$1 node=$2
	[ -n "$pid" ] && [ -r "/proc/$pid/environ" ] || return 1
	{ tr '\0' '\n' <"/proc/$pid/environ"; } 2>/dev/null | grep -qxF -- "RABBITMQ_NODENAME=$node"
}

show_logs() {
	local dir=$1 f
	for f in "$dir"/log/startup.log "$dir"/log/*.log; do
		[ -f "$f" ] || continue
		log "---- tail of $f"
		tail -n 30 "$f" >&2 || true
	done
}

cmd_start() {
	local dir=$1
	if [ -e "$dir/$state_file" ]; then
		die "$dir already holds a node (run: $0 stop $dir)"
	fi
	ensure_installed
	if [ "$(id -u)" != 0 ] && [ "$(id -un)" != rabbitmq ]; then
		die "run as root or as user rabbitmq (the node runs as rabbitmq)"
	fi
	id rabbitmq >/dev/null 2>&1 || die "user rabbitmq does not exist (is Debian's rabbitmq-server package installed?)"

	mkdir -p "$dir/mnesia" "$dir/log"
	dir=$(cd "$dir" && pwd)
	printf '[].\n' >"$dir/enabled_plugins"
	: >"$dir/rabbitmq-env.conf"
	cat >"$dir/rabbitmq.conf" <<-'EOF'
		# Private test node written by deploy/local/rabbitmq.sh.
		log.file.level = info
		log.console = false
	EOF
	if [ "$(id -u)" = 0 ]; then
		chown -R rabbitmq:rabbitmq "$dir"
	fi
	"${run_as[@]}" test -w "$dir/mnesia" ||
		die "user rabbitmq cannot write $dir/mnesia (every parent directory of $dir must be searchable by rabbitmq; try a directory under /tmp)"

	# Ports are chosen and bound under a lock so that concurrent starts do not
	# pick the same ones.
	exec 9>"/tmp/hearth-rabbitmq-ports.lock"
	flock -w 120 9 || die "timed out waiting for /tmp/hearth-rabbitmq-ports.lock"

	local port='' dist='' p
	for ((p = first_port; p <= last_port; p++)); do
		if ! port_busy "$p" && ! port_busy $((p + dist_offset)) && ! node_registered "hearth-test-$p"; then
			port=$p
			dist=$((p + dist_offset))
			break
		fi
	done
	[ -n "$port" ] || die "no free port pair in $first_port-$last_port (+$dist_offset)"
	local name="hearth-test-$port"
	local node="$name@localhost"
	local epmd_started=0
	epmd_running || epmd_started=1

	log "starting $node: AMQP 127.0.0.1:$port, distribution port $dist, state in $dir"
	local launcher
	setsid env \
		RABBITMQ_NODENAME="$node" \
		RABBITMQ_USE_LONGNAME=false \
		RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
		RABBITMQ_NODE_PORT="$port" \
		RABBITMQ_DIST_PORT="$dist" \
		RABBITMQ_MNESIA_BASE="$dir/mnesia" \
		RABBITMQ_LOG_BASE="$dir/log" \
		RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
		RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" \
		RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
		RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf" \
		RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
		"${run_as[@]}" "$rmq_bin/rabbitmq-server" \
		>"$dir/log/startup.log" 2>&1 </dev/null &
	launcher=$!
	{
		echo "NODE=$node"
		echo "PORT=$port"
		echo "DIST_PORT=$dist"
		echo "LAUNCHER_PID=$launcher"
		echo "EPMD_STARTED=$epmd_started"
	} >"$dir/$state_file"

	local deadline=$((SECONDS + start_timeout))
	until (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
		if ! kill -0 "$launcher" 2>/dev/null; then
			show_logs "$dir"
			die "$node exited during start-up (logs above; state left in $dir, remove it with: $0 stop $dir)"
		fi
		if [ "$SECONDS" -ge "$deadline" ]; then
			show_logs "$dir"
			log "$node did not accept AMQP connections within ${start_timeout}s; stopping it"
			cmd_stop "$dir" || true
			exit 1
		fi
		sleep 0.2
	done
	flock -u 9
	exec 9>&-

	if ! ctl "$node" await_startup --timeout "$start_timeout" >&2; then
		show_logs "$dir"
		die "rabbitmqctl -n $node await_startup failed (state left in $dir)"
	fi
	local pid=''
	if [ -s "$dir/rabbitmq.pid" ]; then
		pid=$(tr -dc '0-9' <"$dir/rabbitmq.pid")
	fi
	echo "NODE_PID=$pid" >>"$dir/$state_file"
	log "$node is up (node PID ${pid:-unknown}, launcher PID $launcher)"

	read_state "$dir"
	print_env
}

cmd_env() {
	local dir=$1
	[ -f "$dir/$state_file" ] || die "no node state in $dir"
	read_state "$dir"
	print_env
}

# wait_gone waits up to $1 seconds for the recorded processes to exit.
wait_gone() {
	local deadline=$((SECONDS + $1))
	while is_our_process "$st_pid" "$st_node" || is_our_process "$st_launcher" "$st_node"; do
		[ "$SECONDS" -lt "$deadline" ] || return 1
		sleep 0.2
	done
}

cmd_stop() {
	local dir=$1
	if [ ! -e "$dir" ]; then
		log "$dir does not exist: nothing to stop"
		return 0
	fi
	[ -f "$dir/$state_file" ] || die "$dir has no $state_file: not a directory made by '$0 start'; not touching it"
	read_state "$dir"

	if is_our_process "$st_pid" "$st_node" || is_our_process "$st_launcher" "$st_node"; then
		log "stopping $st_node"
		if ! timeout "$stop_timeout" "${run_as[@]}" "$rmq_bin/rabbitmqctl" -n "$st_node" stop >&2; then
			log "rabbitmqctl stop failed; signalling the recorded PIDs"
		fi
		if ! wait_gone "$stop_timeout"; then
			local pid
			for pid in "$st_launcher" "$st_pid"; do
				if is_our_process "$pid" "$st_node"; then
					kill -TERM "$pid" 2>/dev/null || true
				fi
			done
			if ! wait_gone 10; then
				for pid in "$st_launcher" "$st_pid"; do
					if is_our_process "$pid" "$st_node"; then
						kill -KILL "$pid" 2>/dev/null || true
					fi
				done
				wait_gone 10 || die "could not stop $st_node (PIDs $st_launcher $st_pid)"
			fi
		fi
	else
		log "$st_node is not running"
	fi

	# epmd is shared by all Erlang nodes: stop it only if this node's start
	# launched it and no node is registered any more.
	if [ "$st_epmd" = 1 ] && epmd_running && ! epmd -names 2>/dev/null | grep -q '^name '; then
		epmd -kill >/dev/null 2>&1 || true
	fi
	rm -rf -- "$dir"
	# The lock file shared/testenv keeps for this node (see its package doc).
	rm -f -- "${TMPDIR:-/tmp}/hearth-rabbitmq-${st_node//[^a-zA-Z0-9-]/_}.lock"
	log "stopped $st_node and removed $dir"
}

[ $# -eq 2 ] || usage
case $1 in
start) cmd_start "$2" ;;
env) cmd_env "$2" ;;
stop) cmd_stop "$2" ;;
*) usage ;;
esac
