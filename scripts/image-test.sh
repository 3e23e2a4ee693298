#!/usr/bin/env bash
# Build the image (scripts/image.sh) and run `hangar up` from it, as its user, on its
# filesystem mounted read-only (as a pod with readOnlyRootFilesystem: state in
# HANGAR_HOME and /tmp only), under bubblewrap: `podman run` is refused on machines
# whose runtime cannot set rlimits. Then answer a run on a scripted model and one on
# the bundled local model, and print the image's size and its time to ready.
set -euo pipefail
cd "$(dirname "$0")/.."
VARIANT=${1:-local}
tag=$(scripts/image.sh "$VARIANT" | tail -1)
root=$(podman image mount "$tag")
home=$(mktemp -d)
chmod 0700 "$home"  # owned by this user: 10001 inside the namespace
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cleanup() {
    [ -n "${server:-}" ] && kill "$server" 2>/dev/null && wait "$server" 2>/dev/null || true
    podman image unmount "$tag" >/dev/null || true
    rm -rf "$home"
}
trap cleanup EXIT

started=$(date +%s.%N)
env -i PATH=/opt/hangar/bin:/usr/bin:/bin HANGAR_HOME=/var/lib/hangar \
    HANGAR_HOST=127.0.0.1 HANGAR_PORT="$port" \
    bwrap --ro-bind "$root" / --dev /dev --proc /proc --tmpfs /tmp \
        --bind "$home" /var/lib/hangar --chdir /var/lib/hangar \
        --unshare-user --uid 10001 --gid 10001 --unshare-pid --unshare-ipc --unshare-uts \
        --die-with-parent /opt/hangar/bin/hangar up > "$home.log" 2>&1 &
server=$!
url="http://127.0.0.1:$port"
for _ in $(seq 600); do
    curl -fsS "$url/readyz" >/dev/null 2>&1 && break
    kill -0 "$server" 2>/dev/null || { cat "$home.log"; exit 1; }
    sleep 0.1
done
ready=$(python3 -c "import time; print(f'{time.time() - $started:.1f}')")
key=$(cat "$home/admin.key")
api() { curl -fsS -H "Authorization: Bearer $key" -H 'content-type: application/json' "$@"; }

api -X POST "$url/v1/apply" --data @- >/dev/null <<'JSON'
[{"apiVersion": "hangar.dev/v1alpha1", "kind": "Model", "metadata": {"name": "script"},
  "spec": {"provider": "scripted", "script": [
    {"toolCalls": [{"name": "current_time", "arguments": {}}]}, {"text": "It is noon."}]}},
 {"apiVersion": "hangar.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "clock"},
  "spec": {"model": "script", "tools": [{"builtin": "current_time"}]}},
 {"apiVersion": "hangar.dev/v1alpha1", "kind": "Agent", "metadata": {"name": "hello"},
  "spec": {"model": "local", "limits": {"maxSteps": 1}}}]
JSON
status() { python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"], "|", (r.get("output") or {}).get("text", "")[:60])'; }
echo "scripted run: $(api -X POST "$url/v1/agents/clock/runs" --data '{"input": "time?"}' | status)"
if [ "$VARIANT" = local ]; then
    echo "local model run: $(api -X POST "$url/v1/agents/hello/runs" \
        --data '{"input": "Say hello in three words."}' | status)"
fi
size=$(podman image inspect "$tag" --format '{{.Size}}')
echo "image $tag: $((size / 1000000)) MB; hangar up ready in ${ready} s"
rm -f "$home.log"
