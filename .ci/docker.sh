#!/usr/bin/env bash
# Make a Docker engine answer for the sandbox tests: install Debian's docker.io and
# bubblewrap when missing, start dockerd in the background when none answers, and wait.
# Use: `source .ci/docker.sh`; `docker_test_stop` stops a dockerd this script started.
set -euo pipefail

missing=()
command -v bwrap >/dev/null || missing+=(bubblewrap)
command -v dockerd >/dev/null || missing+=(docker.io)
if [ ${#missing[@]} -gt 0 ]; then
  echo "[ci] installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

DOCKERD_PID=""
if ! docker info >/dev/null 2>&1; then
  echo "[ci] starting dockerd"
  dockerd >/tmp/perfsmith-dockerd.log 2>&1 &
  DOCKERD_PID=$!
  for _ in $(seq 1 60); do
    docker info >/dev/null 2>&1 && break
    sleep 1
  done
fi
if docker info >/dev/null 2>&1; then
  echo "[ci] docker engine $(docker version --format '{{.Server.Version}}') answers"
else
  echo "[ci] docker engine did not start; its log:" >&2
  tail -n 30 /tmp/perfsmith-dockerd.log >&2 || true
  exit 1
fi

docker_test_stop() {
  if [ -n "$DOCKERD_PID" ]; then
    docker ps -aq --filter label=perfsmith.sandbox | xargs -r docker rm -f >/dev/null 2>&1 || true
    kill "$DOCKERD_PID" 2>/dev/null || true
    wait "$DOCKERD_PID" 2>/dev/null || true
  fi
}
