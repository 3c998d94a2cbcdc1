#!/usr/bin/env bash
# Kafka (KRaft) in the compose cluster, started as the local stack starts it (infra/services.py):
# the shared /etc/kafka/server.properties, then this container's values from the KAFKA_*
# variables (KAFKA_A_B -> a.b, __ -> _, ___ -> -, as in the apache/kafka image; the last
# value of a key wins), storage formatted once with CLUSTER_ID, kafka.Kafka in the foreground.
set -euo pipefail
conf=/etc/kafka
props=/tmp/server.properties
{
  cat "$conf/server.properties"
  echo "# compose overrides (KAFKA_* environment, infra/docker/kafka/kafka-server.sh)"
  for name in $(compgen -e | grep '^KAFKA_' | grep -vx 'KAFKA_HEAP_OPTS' | sort); do
    key=${name#KAFKA_}
    key=${key,,}
    key=${key//___/-}
    key=${key//__/@}
    key=${key//_/.}
    echo "${key//@/_}=${!name}"
  done
} >"$props"
log_dirs=$(sed -n 's/^log\.dirs=//p' "$props" | tail -1)
# shellcheck disable=SC2206
java=(java $KAFKA_HEAP_OPTS -XX:+UseG1GC "-Dlog4j.configuration=file:$conf/log4j.properties"
  -cp "/opt/kafka/libs/*")
if [ ! -f "${log_dirs:?log.dirs unset}/meta.properties" ]; then
  "${java[@]}" kafka.tools.StorageTool format -t "${CLUSTER_ID:?CLUSTER_ID unset}" -c "$props" \
    --ignore-formatted
fi
exec "${java[@]}" kafka.Kafka "$props"
