#!/usr/bin/env bash
# The Conductor OSS server's runnable boot jar from Maven Central (3.21.14: the newest 3.21 release Maven Central carries; 3.32+ need Java 21).
source "$(dirname "$0")/lib.sh"

if [[ -s "$CONDUCTOR_JAR" ]]; then log "conductor $CONDUCTOR_VERSION cached"; exit 0; fi
command -v mvn >/dev/null || { echo "mvn is required to fetch the Conductor server (apt-get install maven)" >&2; exit 1; }
command -v java >/dev/null || { echo "java 17 is required to run the Conductor server" >&2; exit 1; }
log "downloading conductor-server $CONDUCTOR_VERSION (boot jar)"
mvn -q -B -Dmaven.repo.local="$CWO_CACHE/m2" dependency:copy \
  -Dartifact="org.conductoross:conductor-server:$CONDUCTOR_VERSION:jar:boot" \
  -Dmdep.stripVersion=false -DoutputDirectory="$(dirname "$CONDUCTOR_JAR")"
ls "$(dirname "$CONDUCTOR_JAR")"
