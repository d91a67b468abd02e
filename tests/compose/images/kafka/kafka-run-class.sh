#!/bin/sh
# java -cp '/opt/kafka/libs/*' MAIN ARGS..., with the heap from KAFKA_HEAP_OPTS (tools: 256m) and log4j2 to stdout.
main=$1
shift
case "$main" in
  kafka.Kafka) heap=${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} ;;
  *) heap="-Xmx256m" ;;
esac
# shellcheck disable=SC2086
exec java $heap -XX:+UseSerialGC -Djava.awt.headless=true ${KAFKA_OPTS:-} \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp '/opt/kafka/libs/*' "$main" "$@"
