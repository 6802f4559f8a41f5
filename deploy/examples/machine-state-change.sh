#!/usr/bin/env bash
# Tells oee-server that a machine changed state, as an HTTP IoT device does.
#   deploy/examples/machine-state-change.sh MACHINE_ID STATE [SERVER]
# STATE 1 = running (needs an active job), anything else = down. SERVER defaults to http://localhost:8080.
# Answers: 200 (empty body) once stored; 400/409 when the machine has no job for "running";
# 404 for an unknown machine; 415 when the body is not sent as JSON.
set -euo pipefail
machine_id=${1:?usage: $0 MACHINE_ID STATE [SERVER]}
state=${2:?usage: $0 MACHINE_ID STATE [SERVER]}
server=${3:-http://localhost:8080}
# The device's token (oee-server device add prints it); leave it out only where bridge.open_device_api is on.
auth=()
if [ -n "${OEE_TOKEN:-}" ]; then auth=(-H "Authorization: Bearer $OEE_TOKEN"); fi
curl -sS -w 'HTTP %{http_code}\n' -X POST "$server/api/machine-state-change" "${auth[@]}" \
  -H 'Content-Type: application/json' \
  -d "{\"machine_id\": $machine_id, \"machine_state\": $state}"
