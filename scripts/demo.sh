#!/usr/bin/env bash
# Set up streamer, start a private redis-server, run the demo pipelines over the
# sample clip (every frame's boxes, then tracked objects with a zone and a line),
# and show the events that came back from Redis.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh

workdir=$(mktemp -d)
cleanup() { .venv/bin/python -m tools.local_redis stop "$workdir"; rm -rf "$workdir"; }
trap cleanup EXIT
url=$(.venv/bin/python -m tools.local_redis start "$workdir")
echo "== redis-server running at $url"

echo "== streamer run pipelines/demo.yaml"
.venv/bin/streamer run pipelines/demo.yaml --redis-url "$url" --stats-json "$workdir/stats.json"

echo "== the last events, read back from Redis (streamer events tail)"
.venv/bin/streamer events tail --redis-url "$url" --count 8

echo "== what the run found"
.venv/bin/python - "$url" "$workdir/stats.json" <<'PY'
import collections, json, sys
import redis
client = redis.Redis.from_url(sys.argv[1])
labels = collections.Counter()
frames_with = collections.Counter()
for _id, fields in client.xrange("streamer:demo:events"):
    event = json.loads(fields[b"event"])
    if event["type"] == "detections":
        seen = {o["label"] for o in event["objects"]}
        labels.update(o["label"] for o in event["objects"])
        frames_with.update(seen)
stats = json.load(open(sys.argv[2]))
print(f"frames processed: {stats['frames']['processed']}, events delivered: "
      f"{stats['events']['delivered']}, lost: {stats['events']['lost']}")
for label, n in labels.most_common():
    print(f"  {label}: {n} detections, in {frames_with[label]} frames")
PY

echo "== streamer run pipelines/parking-zones.yaml (objects, a zone, a line)"
.venv/bin/streamer run pipelines/parking-zones.yaml --redis-url "$url" \
  --stats-json "$workdir/zones.json"

echo "== its events, read back from Redis"
.venv/bin/streamer events tail --redis-url "$url" --stream streamer:parking:events

echo "== what it counted"
.venv/bin/python - "$workdir/zones.json" <<'PY'
import json, sys
stats = json.load(open(sys.argv[1]))
objects = stats["objects"]
print(f"objects: {objects['appeared']} appeared, {objects['left']} left")
for name, c in stats["zones"].items():
    print(f"zone {name}: {c['entered']} entered, {c['exited']} exited")
for name, c in stats["lines"].items():
    print(f"line {name}: {c['in']} in, {c['out']} out")
PY
