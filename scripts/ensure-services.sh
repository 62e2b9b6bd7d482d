#!/usr/bin/env bash
# Makes sure the servers the test suite talks to are installed and answering on loopback:
# RabbitMQ on 5672, Redis on 6379 and PostgreSQL on 5432 (with the tests' database, mlgate_test).
# Installs Debian packages where a server is missing.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
have redis-server || missing+=(redis-server)
have rabbitmq-server || missing+=(rabbitmq-server)
# Not servers: node and npm run KEDA's schema over the Kubernetes manifests (tests/deploy).
have node || missing+=(nodejs)
have npm || missing+=(npm)
pg_installed() { have pg_ctlcluster && compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; }
fresh_postgresql=0
if ! pg_installed; then
  missing+=(postgresql)
  fresh_postgresql=1
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing ${missing[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}"
fi

if ! port_open 6379; then
  echo "starting redis-server on 127.0.0.1:6379"
  mkdir -p /tmp/mlgate-redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /tmp/mlgate-redis --logfile /tmp/mlgate-redis/redis.log
fi

if ! port_open 5672; then
  echo "starting rabbitmq-server on 127.0.0.1:5672"
  as_root rabbitmq-server -detached
fi

pg_version=$(find /etc/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -V | tail -1)
pg_version=${pg_version:-$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' | sort -V | tail -1)}
if ! port_open 5432; then
  echo "starting PostgreSQL $pg_version on 127.0.0.1:5432"
  [ -d "/etc/postgresql/$pg_version/main" ] || as_root pg_createcluster "$pg_version" main
  as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main start
fi

ready=0
for _ in $(seq 1 60); do
  if port_open 6379 && port_open 5672 && pg_isready -q -h 127.0.0.1 -p 5432; then
    # The AMQP port opens before the node accepts logins; wait for the node to report running.
    if ! have rabbitmqctl || as_root rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1; then
      ready=1
      break
    fi
  fi
  sleep 1
done
if [ "$ready" != 1 ]; then
  echo "services did not come up: check 'redis-cli ping', 'rabbitmqctl status' and" \
    "'pg_lsclusters'" >&2
  exit 1
fi

# The tests connect as postgres over loopback without a password.
pg() { psql -h 127.0.0.1 -p 5432 -U postgres -w -X -q -At "$@"; }
if ! pg -c 'SELECT 1' >/dev/null 2>&1; then
  if [ "$fresh_postgresql" = 1 ]; then
    echo "letting loopback connections in without a password (a test machine's new server)"
    hba="/etc/postgresql/$pg_version/main/pg_hba.conf"
    as_root sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
    as_root pg_ctlcluster --skip-systemctl-redirect "$pg_version" main reload
  else
    echo "PostgreSQL on 127.0.0.1:5432 refuses user postgres without a password: on a test" \
      "machine, add 'host all all 127.0.0.1/32 trust' to its pg_hba.conf and reload it" >&2
    exit 1
  fi
fi
if [ "$(pg -c "SELECT 1 FROM pg_database WHERE datname = 'mlgate_test'")" != 1 ]; then
  echo "creating the tests' database mlgate_test"
  pg -c 'CREATE DATABASE mlgate_test'
fi
echo "services ready: redis 127.0.0.1:6379, rabbitmq 127.0.0.1:5672," \
  "postgresql 127.0.0.1:5432 (database mlgate_test)"
