#!/usr/bin/env bash
# Installs what oee-server needs on Debian/Ubuntu and what its tests use:
#   postgresql        server binaries for the embedded database (initdb, postgres)
#   mosquitto-clients mosquitto_pub / mosquitto_sub, the outside MQTT client the tests drive
#   mosquitto         a second broker the tests start on a free port (its system service is disabled so
#                     it does not take port 1883 from the embedded broker)
# With --tests, also what only the tests use:
#   chromium chromium-driver  headless Chromium driven over WebDriver through the operator page
#   python3                   runs Eclipse Paho's MQTT interoperability suite against the embedded broker
# Installs only what is missing; safe to run again.
# TimescaleDB is optional and not installed here (Debian's and Ubuntu's own repositories do not carry it):
# the script says whether the server will find it.
set -euo pipefail

tests=false
for arg in "$@"; do
  case "$arg" in
    --tests) tests=true ;;
    *) echo "usage: $0 [--tests]" >&2; exit 2 ;;
  esac
done

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v mosquitto_pub >/dev/null 2>&1 || need+=(mosquitto-clients)
[ -x /usr/sbin/mosquitto ] || need+=(mosquitto)
if $tests; then
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -x /usr/bin/chromedriver ] || need+=(chromium-driver)
  command -v python3 >/dev/null 2>&1 || need+=(python3)
fi

if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "installing: ${need[*]}"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
  # Debian starts a cluster and a broker as services on install; oee-server runs its own.
  if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
    for svc in mosquitto postgresql; do
      if printf '%s\n' "${need[@]}" | grep -qx "$svc"; then
        $sudo systemctl disable --now "$svc" >/dev/null 2>&1 || true
      fi
    done
  fi
fi

# The server keeps telemetry in TimescaleDB hypertables when TimescaleDB is installed for its PostgreSQL.
for bin in /usr/lib/postgresql/*/bin; do
  [ -x "$bin/postgres" ] || continue
  version=$(basename "$(dirname "$bin")")
  if [ -f "/usr/lib/postgresql/$version/lib/timescaledb.so" ]; then
    echo "PostgreSQL $version: TimescaleDB is installed; the server uses hypertables for telemetry"
  else
    echo "PostgreSQL $version: TimescaleDB is not installed; the server keeps telemetry in plain tables" \
      "(optional: timescaledb-2-postgresql-$version from Timescale's apt repository)"
  fi
done
