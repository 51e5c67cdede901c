#!/usr/bin/env bash
# Set up streamer on a Debian/Ubuntu machine: system packages when missing, then a
# virtual environment in .venv with the package installed in editable mode.
#   scripts/setup.sh          # what running the demo needs
#   scripts/setup.sh test     # plus what the tests need (GStreamer's RTSP server too)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

missing=()
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
python3 -c 'import ensurepip, venv' >/dev/null 2>&1 || missing+=(python3-venv)
# The tests serve real H.264 over RTSP with GStreamer, driven from Debian's python3 (gi).
if [ "${1:-}" = "test" ] && ! /usr/bin/python3 tools/rtsp_server.py --check >/dev/null 2>&1; then
  missing+=(python3 python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-rtsp-server-1.0
            gstreamer1.0-rtsp gstreamer1.0-plugins-base gstreamer1.0-plugins-good
            gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)
fi
# The preview page is checked in a real headless browser.
if [ "${1:-}" = "test" ] && ! command -v chromium >/dev/null 2>&1; then
  missing+=(chromium)
fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== installing ${missing[*]} (apt)"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"streamer needs Python 3.10 or newer, this is {sys.version.split()[0]}")
PY

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  python3 -m venv .venv
fi
extra=""
[ "${1:-}" = "test" ] && extra="[test]"
echo "== installing streamer${extra} into .venv"
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".${extra}"
