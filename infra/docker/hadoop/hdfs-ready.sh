#!/usr/bin/env bash
# Health checks of the HDFS containers, from the NameNode's JMX (no JVM started):
#   hdfs-ready namenode   the namesystem is operational (out of safe mode)
#   hdfs-ready datanode   the DataNode is live at the NameNode under its advertised name
set -euo pipefail
jmx() { curl -fsS --max-time 10 "http://$1/jmx?qry=Hadoop:service=NameNode,name=$2"; }
case ${1:-} in
  namenode) jmx localhost:9870 FSNamesystemState | grep -q '"FSState" : "Operational"' ;;
  datanode)
    jmx "${NAMENODE_HTTP:-namenode:9870}" NameNodeInfo \
      | grep -q "\\\\\"${DATANODE_NAME:-$(hostname)}:9866\\\\\"" ;;
  *) echo "usage: hdfs-ready namenode|datanode" >&2; exit 2 ;;
esac
