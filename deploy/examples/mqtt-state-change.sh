#!/usr/bin/env bash
# Publishes a machine state change over MQTT (Debian package mosquitto-clients) and prints ingest's verdict.
#   OEE_MQTT_USER=plc-1 OEE_MQTT_PASSWORD=... deploy/examples/mqtt-state-change.sh MACHINE ACTIVITY_CODE_ID [HOST] [PORT]
# MACHINE is the machine's id or topic name (oee-server machine list shows both). The user name and password are
# the device's (oee-server device add prints them); leave them out only where broker.allow_anonymous is on.
set -euo pipefail
machine=${1:?usage: $0 MACHINE ACTIVITY_CODE_ID [HOST] [PORT]}
code=${2:?usage: $0 MACHINE ACTIVITY_CODE_ID [HOST] [PORT]}
host=${3:-localhost}
port=${4:-1883}
auth=()
if [ -n "${OEE_MQTT_USER:-}" ]; then auth=(-u "$OEE_MQTT_USER" -P "${OEE_MQTT_PASSWORD:-}"); fi
# Verdicts are published only under oee/v1/replies/; a device may read those under its own name.
reply="oee/v1/replies/${OEE_MQTT_USER:-example}/$$"
# Listen for the verdict first, then publish the command with a reply topic.
mosquitto_sub "${auth[@]}" -h "$host" -p "$port" -t "$reply" -C 1 -W 10 &
sub=$!
sleep 0.3
mosquitto_pub "${auth[@]}" -h "$host" -p "$port" -q 1 -t "oee/v1/machines/$machine/state" \
  -m "{\"activity_code_id\": $code, \"request_id\": \"example-$$-$(date +%s%N)\", \"reply_to\": \"$reply\"}"
wait $sub
