#!/usr/bin/env bash
# Publishes a machine state change over MQTT (Debian package mosquitto-clients) and prints ingest's verdict.
#   deploy/examples/mqtt-state-change.sh MACHINE ACTIVITY_CODE_ID [HOST] [PORT]
# MACHINE is the machine's id or topic name (oee-server machine list shows both).
set -euo pipefail
machine=${1:?usage: $0 MACHINE ACTIVITY_CODE_ID [HOST] [PORT]}
code=${2:?usage: $0 MACHINE ACTIVITY_CODE_ID [HOST] [PORT]}
host=${3:-localhost}
port=${4:-1883}
reply="example/replies/$$"
# Listen for the verdict first, then publish the command with a reply topic.
mosquitto_sub -h "$host" -p "$port" -t "$reply" -C 1 -W 10 &
sub=$!
sleep 0.3
mosquitto_pub -h "$host" -p "$port" -q 1 -t "oee/v1/machines/$machine/state" \
  -m "{\"activity_code_id\": $code, \"request_id\": \"example-$$-$(date +%s%N)\", \"reply_to\": \"$reply\"}"
wait $sub
