#!/usr/bin/env bash
# The HDFS NameNode or DataNode of the compose cluster, started as the local stack starts
# them (infra/services.py, _hadoop_cmd): JDK 17 with the same --add-opens, the ${lambdalab.*}
# properties of the shared XML from HADOOP_OPTS (infra/compose/hadoop.env), the config dir
# first on the classpath. The NameNode formats its name dir once.
set -euo pipefail
role=${1:?usage: hdfs-daemon namenode|datanode}
conf=/opt/hadoop/etc/hadoop
opens=(
  --add-opens=java.base/java.lang=ALL-UNNAMED
  --add-opens=java.base/java.util=ALL-UNNAMED
  --add-opens=java.base/java.nio=ALL-UNNAMED
  --add-opens=java.base/sun.nio.ch=ALL-UNNAMED
  --add-opens=java.base/java.lang.reflect=ALL-UNNAMED
)
# shellcheck disable=SC2206
java=(java "-Xmx${HADOOP_HEAPSIZE_MAX:-1g}" "${opens[@]}" ${HADOOP_OPTS:-}
  -Dhadoop.log.dir=/tmp "-Dlog4j.configuration=file:$conf/log4j.properties"
  -cp "$conf:/opt/hadoop/libs/*")
case $role in
  namenode)
    main=org.apache.hadoop.hdfs.server.namenode.NameNode
    state=$(grep -oP '(?<=-Dlambdalab\.state\.dir=)\S+' <<<"${HADOOP_OPTS:-}" || true)
    if [ ! -f "${state:?-Dlambdalab.state.dir missing in HADOOP_OPTS}/hdfs/name/current/VERSION" ]; then
      "${java[@]}" "$main" -format -nonInteractive -force
    fi
    ;;
  datanode) main=org.apache.hadoop.hdfs.server.datanode.DataNode ;;
  *) echo "unknown role $role (namenode or datanode)" >&2; exit 2 ;;
esac
exec "${java[@]}" "$main"
