#!/bin/sh
# Container entrypoint: prove the set-up works (`ingest check`: config, Redis, the store and
# every account), then replace this shell with the command (default: ingest worker).
#   INGEST_CHECK_ATTEMPTS  tries before giving up (default 3; a config error is never retried)
#   INGEST_CHECK_DELAY     seconds between tries (default 5)
#   INGEST_SKIP_CHECK=1    start without checking (e.g. for one-off operator commands)
set -eu

[ "$#" -gt 0 ] || set -- ingest worker --concurrency 4
attempts="${INGEST_CHECK_ATTEMPTS:-3}"
delay="${INGEST_CHECK_DELAY:-5}"

if [ "${INGEST_SKIP_CHECK:-0}" != "1" ]; then
  n=1
  while :; do
    status=0
    ingest check || status=$?
    [ "$status" -eq 0 ] && break
    if [ "$status" -eq 78 ] || [ "$n" -ge "$attempts" ]; then
      echo "entrypoint: ingest check failed (exit $status, attempt $n of $attempts);" \
        "not starting: $*" >&2
      exit "$status"
    fi
    echo "entrypoint: ingest check failed (exit $status, attempt $n of $attempts);" \
      "retrying in ${delay}s" >&2
    n=$((n + 1))
    sleep "$delay"
  done
fi
exec "$@"
