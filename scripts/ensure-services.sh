#!/usr/bin/env bash
# Makes sure the servers the test suite talks to are installed and answering on loopback:
# RabbitMQ on 5672 and Redis on 6379. Installs Debian packages where a server is missing.
set -euo pipefail

have() { command -v "$1" >/dev/null 2>&1; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
have redis-server || missing+=(redis-server)
have rabbitmq-server || missing+=(rabbitmq-server)
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

for _ in $(seq 1 60); do
  if port_open 6379 && port_open 5672; then
    # The AMQP port opens before the node accepts logins; wait for the node to report running.
    if ! have rabbitmqctl || as_root rabbitmqctl await_startup --timeout 60 >/dev/null 2>&1; then
      echo "services ready: redis 127.0.0.1:6379, rabbitmq 127.0.0.1:5672"
      exit 0
    fi
  fi
  sleep 1
done
echo "services did not come up: check 'redis-cli ping' and 'rabbitmqctl status'" >&2
exit 1
