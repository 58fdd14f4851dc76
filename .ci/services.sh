#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on their default local ports, starting any
# that is installed but down with this machine's own commands, then waiting until it answers.
set -u

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for() {  # name, port, seconds
  for _ in $(seq 1 "$3"); do port_open "$2" && return 0; sleep 1; done
  echo "services: $1 did not come up on port $2" >&2
  return 1
}

if ! port_open 5432; then
  echo "services: starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi
if ! port_open 6379; then
  echo "services: starting Redis"
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi
if ! port_open 5672; then
  echo "services: starting RabbitMQ"
  rabbitmq-server -detached
fi

wait_for PostgreSQL 5432 60 && wait_for Redis 6379 30 && wait_for RabbitMQ 5672 120 || exit 1
# RabbitMQ opens its port a little before it accepts AMQP logins; give it that moment.
for _ in $(seq 1 30); do
  rabbitmqctl -q await_startup >/dev/null 2>&1 && break
  sleep 1
done
exit 0
