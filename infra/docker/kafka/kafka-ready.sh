#!/usr/bin/env bash
# Health check of the Kafka container: the broker at $1 answers ApiVersions (it is registered
# and serves requests), with a small client JVM.
set -euo pipefail
exec java -Xmx64m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -cp "/opt/kafka/libs/*" \
  -Dlog4j.configuration=file:/etc/kafka/log4j.properties \
  kafka.admin.BrokerApiVersionsCommand --bootstrap-server "${1:?usage: kafka-ready HOST:PORT}" \
  >/dev/null
