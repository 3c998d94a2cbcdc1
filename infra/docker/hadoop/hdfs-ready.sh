#!/usr/bin/env bash
# Health checks of the HDFS containers, from the NameNode's JMX (no JVM started):
#   hdfs-ready namenode   the NameNode is up and active (it may still be in safe mode: after
#                         a restart it leaves safe mode only once the DataNode reported its
#                         blocks, and the DataNode starts only once this check passes)
#   hdfs-ready datanode   the DataNode is live at the NameNode under its advertised name,
#                         and the namesystem is out of safe mode: HDFS takes writes
set -euo pipefail
jmx() { curl -fsS --max-time 10 "http://$1/jmx?qry=Hadoop:service=NameNode,name=$2"; }
namenode=${NAMENODE_HTTP:-namenode:9870}
case ${1:-} in
  namenode) jmx localhost:9870 NameNodeStatus | grep -q '"State" : "active"' ;;
  datanode)
    jmx "$namenode" NameNodeInfo | grep -q "\\\\\"${DATANODE_NAME:-$(hostname)}:9866\\\\\""
    jmx "$namenode" FSNamesystemState | grep -q '"FSState" : "Operational"'
    ;;
  *) echo "usage: hdfs-ready namenode|datanode" >&2; exit 2 ;;
esac
