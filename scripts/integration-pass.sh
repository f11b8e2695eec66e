#!/usr/bin/env bash
# One pass of the integration and end-to-end files on one RabbitMQ: `system` (the machine's, what `npm test` runs),
# `4.0` or `4.3` (a root made by scripts/rabbitmq-root.sh; .ci/run runs both after `npm test`).
#
# The files mostly wait (broker restarts, timeouts, child processes), so one at a time (vitest's default on 2 cores)
# left the machine idle: `npm test` took 33 minutes on a slow 2-core VM, past CI's budget with the 4.x passes. They run
# in two groups at once, each vitest run on a sandbox node of its own (the global setup starts one per run, on free
# ports):
# - one at a time: the files that hold their node's tracing (the firehose on vhost /) to what they found, or restart
#   or block it. Run beside a file that traces, they see its tracing on (inspection.test.ts did, on 4.3.6).
#   heartbeat-busy blocks its own event loop for 1.85 s against a 2 s heartbeat: beside two other files it once missed.
#   faults and session-broker-restart restart the shared node mid-run: beside them, another file's requests die with it
#   (the wrong replies faults counted on 4.3.6 twice were the server answering a nacked reply's request with an error,
#   fixed since); e2e/broker-restart stops and starts a node of its own, which took past its 30 s wait beside two other
#   files once.
#   A file traces when it reads or switches tracing through the management API, turns the firehose on in the UI
#   (inspector e2e: its trace test timed out on 4.3.6 beside a file that turned tracing off), starts a FirehoseTracer, or
#   runs `call --trace`. Not integration/diagnosis.test.ts: its FirehoseTracer traces a vhost of its own.
# - all others, 2 at a time (3 files at once in all, as measured in issue 22).
# On 4.x these are left out:
# - test/integration/preflight-versions.test.ts: version-specific (the pre-flight's exact 3.10 lines on a real 3.10
#   node; the 4.x lines are unit-tested from the rules table); what 4.x does is seen by broker-shapes,
#   requests-formats, trace-bodies, mqtt-to-amqp and reply-qos in these passes.
# - test/e2e/trust.test.ts: its scenarios need a RabbitMQ without MQTT 5 (3.10-3.12): a Connect refused for asking MQTT
#   5, and MQTT 5 options filled in but not sent over the 3.1.1 it falls back to. On 4.x both are accepted and sent.
# - test/integration/sandbox-cluster.test.ts (3 nodes) on 4.0: it runs on 3.10 (Mnesia) and 4.3 (Khepri); 4.0 is Mnesia.
# And in the 4.3 pass only: test/integration/sandbox-other-version.test.ts starts a folder on the machine's RabbitMQ, then
# on 4.3 (a version switch on one folder): it needs the 4.3 root, which `npm test` on a newcomer's machine does not have
# (.ci/run makes it for the 4.x passes).
# The serial group's output is printed after the other's, whole. Exit 1 when either group failed, after the failed
# tests of both groups again, last: CI keeps only the tail of a long log, and a 4.3 pass once failed with the tail
# showing the serial group's green summary and not one line of what failed in the other.
set -euo pipefail
cd "$(dirname "$0")/.."
version=${1:?give the RabbitMQ: system, 4.0 or 4.3}

left_out=()
case "$version" in
  system) left_out=(test/integration/sandbox-other-version.test.ts) ;;
  4.0) left_out=(test/integration/preflight-versions.test.ts test/e2e/trust.test.ts test/integration/sandbox-cluster.test.ts test/integration/sandbox-other-version.test.ts) ;;
  *) left_out=(test/integration/preflight-versions.test.ts test/e2e/trust.test.ts) ;;
esac
not_left_out() {
  if [ ${#left_out[@]} -eq 0 ]; then cat; else grep -v -x $(printf ' -e %s' "${left_out[@]}"); fi
}

mapfile -t serial < <({
  grep -lE "api\.tracing\(|tracingBefore|trace-firehose|firehoseOnInUi|new FirehoseTracer|'--trace'|trace\.tracing\.set" test/integration/*.test.ts test/e2e/*.test.ts
  printf '%s\n' test/integration/heartbeat-busy.test.ts test/integration/cli-watch-stop.test.ts test/integration/cli-call-restart.test.ts test/integration/faults.test.ts test/integration/session-broker-restart.test.ts test/e2e/broker-restart.test.ts test/integration/sandbox-cluster.test.ts
} | sort -u | grep -v -x -e test/integration/diagnosis.test.ts | not_left_out)
mapfile -t others < <(ls test/integration/*.test.ts test/e2e/*.test.ts | not_left_out | grep -v -x $(printf ' -e %s' "${serial[@]}"))

echo "== RabbitMQ $version: ${#serial[@]} files that hold their node's tracing or restart it, one at a time on a node of their own, beside the other ${#others[@]} files, 2 at a time on another node"
serial_log=$(mktemp)
others_log=$(mktemp)
trap 'rm -f "$serial_log" "$others_log"' EXIT
BRIDGESCOPE_TEST_RABBITMQ="$version" npx vitest run --project integration "${serial[@]}" >"$serial_log" 2>&1 &
serial_pid=$!
set +e
BRIDGESCOPE_TEST_RABBITMQ="$version" npx vitest run --project integration --maxWorkers=2 --minWorkers=1 "${others[@]}" 2>&1 | tee "$others_log"
others_status=${PIPESTATUS[0]}
set -e
serial_status=0
wait "$serial_pid" || serial_status=$?
echo "== the serial files on RabbitMQ $version (their own node):"
cat "$serial_log"
if [ "$others_status" -ne 0 ] || [ "$serial_status" -ne 0 ]; then
  # vitest's own summary of what failed, colours taken out: the name of each failed test, then the start of its block
  # (the first failure's assertion and where it was).
  failed_tests() {
    local plain
    plain=$(sed -e 's/\x1b\[[0-9;]*m//g' "$1" | sed -n -e '/Failed Tests [0-9]\|Failed Suites [0-9]\|Unhandled Errors/,/Test Files /p')
    grep -E '^ *FAIL ' <<<"$plain" | sort -u
    grep -vE '^ *$' <<<"$plain" | head -n 40
  }
  [ "$others_status" -eq 0 ] || { echo "== what failed in the files run 2 at a time on RabbitMQ $version:"; failed_tests "$others_log"; }
  [ "$serial_status" -eq 0 ] || { echo "== what failed in the files run one at a time on RabbitMQ $version:"; failed_tests "$serial_log"; }
  echo "== RabbitMQ $version pass failed (2 at a time: exit $others_status; one at a time: exit $serial_status)"
  exit 1
fi
