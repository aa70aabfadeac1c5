#!/usr/bin/env bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the distributed-study tests.
# Installs Debian's postgresql package if needed (run as root). Prints the SQLAlchemy URL on stdout:
#   export DQN_TUNE_TEST_POSTGRES_URL=$(bash scripts/start_test_postgres.sh)
set -euo pipefail
PORT=${PGPORT_TEST:-54329}
if ! ls -d /usr/lib/postgresql/*/bin >/dev/null 2>&1; then
  apt-get update >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql >&2
fi
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -n 1)
DIR=$(mktemp -d /tmp/dqn-tune-pg.XXXXXX)
chown postgres "$DIR"
runuser -u postgres -- "$PGBIN/initdb" -D "$DIR/data" -U postgres --auth=trust >&2
runuser -u postgres -- "$PGBIN/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PORT -k $DIR -c max_connections=200" start >&2
runuser -u postgres -- "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -c "CREATE DATABASE optuna" >&2
echo "postgresql+psycopg2://postgres@127.0.0.1:$PORT/optuna"
