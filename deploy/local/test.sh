#!/usr/bin/env bash
# test.sh is `make test`: every Go test with the race detector, including the
# ones against a real RabbitMQ. With arguments it runs `go test -race` with
# them instead, against the same private RabbitMQ (make chaos).
#
# RabbitMQ: with HEARTH_TEST_AMQP_URL set, the tests use that broker. Otherwise
# a private node is started with deploy/local/rabbitmq.sh (own node name, data
# directory and ports; Debian's rabbitmq-server is installed when missing and
# we are root) and stopped afterwards. The broker tests never skip in CI
# (CI=true): a missing broker fails them.
set -euo pipefail
cd "$(dirname "$0")/../.."

started=""
cleanup() {
	if [ -n "$started" ]; then
		deploy/local/rabbitmq.sh stop "$started" >&2 || true
	fi
}
trap cleanup EXIT INT TERM

if [ -z "${HEARTH_TEST_AMQP_URL:-}" ]; then
	dir=$(mktemp -d /tmp/hearth-rmq-test.XXXXXX)
	started=$dir
	eval "$(deploy/local/rabbitmq.sh start "$dir")"
	export HEARTH_TEST_AMQP_URL HEARTH_TEST_RABBITMQ_NODE
fi
echo "test.sh: RabbitMQ for the tests: ${HEARTH_TEST_AMQP_URL}" >&2

if [ $# -gt 0 ]; then
	# A chosen run (make chaos): go test arguments as given.
	go test -race -count=1 "$@"
	exit
fi
go vet ./...
go test -race -count=1 -timeout 12m ./...
