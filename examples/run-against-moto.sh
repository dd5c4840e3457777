#!/usr/bin/env bash
# kvs-sentinel run, end to end, on this machine: no AWS account, no AWS CLI, no Docker.
#
#   .venv/bin/uv sync --locked --extra dev --inexact     # moto and boto3 come with the dev extras
#   examples/run-against-moto.sh
#
# 1. starts moto (a local AWS) in server mode on 127.0.0.1, on a free port;
# 2. creates the queue kvs-sentinel with its dead-letter queue kvs-sentinel-dlq (maxReceiveCount 5);
# 3. writes my.yaml: the built-in pack, that queue as the source, alerts as JSON Lines on stdout;
# 4. starts `kvs-sentinel run --config my.yaml`;
# 5. sends the 14 EventBridge events of examples/eventbridge-management.jsonl to the queue, as an
#    EventBridge rule targeting the queue would;
# 6. waits until every alert `kvs-sentinel replay` finds in the same file has arrived, and shows them;
# 7. stops the sentinel with SIGTERM (as ECS does), then moto, and removes what it wrote.
#
# AWS calls go through boto3 from the venv, so AWS CLI v1 or v2 does not matter. Environment:
#   PYTHON=path/to/python   the venv's interpreter (default: .venv/bin/python of this checkout)
#   KEEP=1                  keep the working folder (my.yaml, alerts.jsonl, sentinel.log) and print it
#   TIMEOUT=60              seconds to wait for moto, then for the alerts
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-$repo/.venv/bin/python}
timeout=${TIMEOUT:-60}
events="$repo/examples/eventbridge-management.jsonl"
work=$(mktemp -d "${TMPDIR:-/tmp}/kvs-sentinel-moto.XXXXXX")
moto_pid="" sentinel_pid=""

say() { printf '==> %s\n' "$*"; }

stop() {  # stop what this script started, by pid, and wait for it
    local pid=$1
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

cleanup() {
    local status=$?
    stop "$sentinel_pid"
    stop "$moto_pid"
    if [ "$status" -ne 0 ] && [ -f "$work/sentinel.log" ]; then
        echo "--- last lines of the sentinel's log ($work/sentinel.log):" >&2
        tail -n 20 "$work/sentinel.log" >&2
    fi
    if [ -n "${KEEP:-}" ]; then echo "kept: $work" >&2; else rm -rf "$work"; fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$python" -c 'import boto3, moto.server' 2>/dev/null || {
    echo "moto and boto3 are missing: install the dev extras (.venv/bin/uv sync --locked --extra dev --inexact)" >&2
    exit 2
}

# The standard AWS environment, pointed at moto; nothing from ~/.aws leaks in.
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE="$work/no-aws-config" AWS_SHARED_CREDENTIALS_FILE="$work/no-aws-credentials"
unset AWS_PROFILE AWS_DEFAULT_PROFILE AWS_SESSION_TOKEN

say "starting moto on $AWS_ENDPOINT_URL"
"$python" -m moto.server -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
"$python" - "$timeout" <<'PY'
import os, sys, time, urllib.request

deadline = time.monotonic() + float(sys.argv[1])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
while True:  # poll until moto answers
    try:
        opener.open(os.environ["AWS_ENDPOINT_URL"] + "/moto-api/", timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            sys.exit("moto did not start: see moto.log")
        time.sleep(0.1)
PY

say "creating the queue kvs-sentinel and its dead-letter queue"
KVS_SENTINEL_QUEUE_URL=$("$python" - <<'PY'
import json, boto3

sqs = boto3.client("sqs")
dlq = sqs.create_queue(QueueName="kvs-sentinel-dlq")["QueueUrl"]
dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
print(sqs.create_queue(QueueName="kvs-sentinel", Attributes={"RedrivePolicy": redrive})["QueueUrl"])
PY
)
export KVS_SENTINEL_QUEUE_URL

say "writing $work/my.yaml"
cat >"$work/my.yaml" <<'YAML'
packs: [builtin:kvs]          # the shipped pack, from any folder
# your lists go here (see config/sentinel.yaml): producer_principals, trusted_networks...
sinks:
  console: {type: stdout}     # JSON Lines on stdout; in production: slack, sns
grouping: {window_seconds: 0} # every alert, so this demo can count them
sources:
  - type: sqs
    queue_url: ${KVS_SENTINEL_QUEUE_URL}
    wait_time_seconds: 2
service:
  health_host: 127.0.0.1
  health_port: 0              # any free port: the demo does not probe it
  grace_seconds: 10
  close_seconds: 2
YAML
"$python" -m kvs_sentinel validate --config "$work/my.yaml"
expected=$("$python" -m kvs_sentinel replay --no-progress --config "$work/my.yaml" "$events" 2>/dev/null | wc -l)
expected=$((expected + 0))

say "starting kvs-sentinel run --config my.yaml (alerts: $work/alerts.jsonl, logs: $work/sentinel.log)"
"$python" -m kvs_sentinel run --config "$work/my.yaml" --log-format json >"$work/alerts.jsonl" 2>"$work/sentinel.log" &
sentinel_pid=$!

say "sending $(wc -l <"$events" | tr -d ' ') CloudTrail events (EventBridge envelopes) to the queue"
"$python" - "$events" <<'PY'
import os, sys, boto3

sqs = boto3.client("sqs")
bodies = [line for line in open(sys.argv[1], encoding="utf-8") if line.strip()]
for start in range(0, len(bodies), 10):
    batch = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(bodies[start : start + 10])]
    failed = sqs.send_message_batch(QueueUrl=os.environ["KVS_SENTINEL_QUEUE_URL"], Entries=batch).get("Failed")
    if failed:
        sys.exit(f"send_message_batch failed: {failed}")
PY

say "waiting for the $expected alerts replay finds in the same events"
"$python" - "$work/alerts.jsonl" "$expected" "$timeout" "$sentinel_pid" <<'PY'
import os, sys, time

path, expected, seconds, pid = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
deadline = time.monotonic() + seconds
while True:  # poll the sink's output until every alert is there
    with open(path, encoding="utf-8") as handle:
        count = sum(1 for line in handle if line.strip())
    if count >= expected:
        break
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        sys.exit("kvs-sentinel run exited early: see sentinel.log")
    if time.monotonic() > deadline:
        sys.exit(f"{count} of {expected} alerts after {seconds:g} s")
    time.sleep(0.2)
PY

say "stopping kvs-sentinel (SIGTERM, as ECS does)"
kill -TERM "$sentinel_pid"
status=0
wait "$sentinel_pid" || status=$?
sentinel_pid=""
[ "$status" -eq 0 ] || { echo "kvs-sentinel run exited $status after SIGTERM" >&2; exit 1; }

say "alerts (severity, detector, summary); each is one JSON object in alerts.jsonl"
"$python" - "$work/alerts.jsonl" <<'PY'
import json, sys

for line in open(sys.argv[1], encoding="utf-8"):
    alert = json.loads(line)
    print(f"  {alert['severity']:<8} {alert['detector']:<36} {alert['summary']}")
PY
"$python" - "$work/sentinel.log" <<'PY'
import json, sys

for line in open(sys.argv[1], encoding="utf-8"):
    entry = json.loads(line) if line.startswith("{") else {}
    if entry.get("event") == "run_finished":
        print(f"==> kvs-sentinel stopped cleanly: {entry.get('summary', '')}")
PY
stop "$moto_pid"
moto_pid=""
say "done: $expected alerts, moto stopped"
