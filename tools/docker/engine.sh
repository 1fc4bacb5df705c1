#!/usr/bin/env bash
# A private Docker engine for the image's tests: dockerd (as root) with its data root, exec root and
# socket in one folder, no iptables rules and no default bridge, so it touches nothing of the host's.
#   eval "$(tools/docker/engine.sh start /tmp/engine)"   # starts it, prints export DOCKER_HOST=...
#   tools/docker/engine.sh stop /tmp/engine              # stops it and removes the folder
set -euo pipefail

usage() { echo "usage: $0 start|stop FOLDER" >&2; exit 2; }
[ $# -eq 2 ] || usage
action=$1
folder=$(realpath -m "$2")
socket="unix://$folder/docker.sock"
[ "$folder" != / ] || usage

case "$action" in
start)
    command -v dockerd > /dev/null || { echo "$0: dockerd is missing (Debian package docker.io)" >&2; exit 1; }
    if [ -f "$folder/dockerd.pid" ] && kill -0 "$(cat "$folder/dockerd.pid")" 2> /dev/null; then
        echo "$0: an engine already runs in $folder" >&2
        exit 1
    fi
    mkdir -p "$folder/data" "$folder/exec"
    # setsid: the engine outlives this script, in a session of its own, until `stop`
    setsid dockerd --data-root "$folder/data" --exec-root "$folder/exec" --host "$socket" \
        --pidfile "$folder/dockerd.pid" --iptables=false --ip6tables=false --bridge=none \
        --storage-driver=overlay2 > "$folder/dockerd.log" 2>&1 < /dev/null &
    for _ in $(seq 120); do
        if DOCKER_HOST="$socket" docker version > /dev/null 2>&1; then
            echo "export DOCKER_HOST=$socket"
            exit 0
        fi
        sleep 0.5
    done
    echo "$0: dockerd did not answer within 60 s; its log, $folder/dockerd.log:" >&2
    tail -n 20 "$folder/dockerd.log" >&2
    exit 1
    ;;
stop)
    [ -d "$folder" ] || exit 0
    rmdir "$folder" 2> /dev/null && exit 0  # empty: no engine was started in it
    if [ ! -e "$folder/data" ] && [ ! -e "$folder/dockerd.pid" ]; then
        echo "$0: $folder is not an engine's folder: left as it is" >&2
        exit 1
    fi
    if [ -f "$folder/dockerd.pid" ]; then
        pid=$(cat "$folder/dockerd.pid")
        # containers first, so that none outlives its engine
        DOCKER_HOST="$socket" docker ps -q | xargs -r env DOCKER_HOST="$socket" docker rm -f > /dev/null 2>&1 || true
        kill "$pid" 2> /dev/null || true
        for _ in $(seq 60); do
            kill -0 "$pid" 2> /dev/null || break
            sleep 0.5
        done
        kill -0 "$pid" 2> /dev/null && { echo "$0: dockerd $pid did not stop" >&2; exit 1; }
    fi
    # the engine leaves its overlay mounts behind only when killed; unmount any before removing
    grep -o " $folder/[^ ]*" /proc/mounts | sort -r | xargs -r -n1 umount -l 2> /dev/null || true
    rm -rf "$folder"
    ;;
*) usage ;;
esac
