"""A local RTSP server that serves video files as endless live H.264 (or H.265) cameras, for
tests.

Runs under Debian's /usr/bin/python3 (GStreamer's RTSP server through python3-gi):

    /usr/bin/python3 tools/rtsp_server.py --port 8554 \\
        --mount cam1=/path/a.mp4 --mount cam2=/path/b.mp4 [--fps 10] \\
        [--width W --height H | --follow-size] [--bitrate-kbps K] [--key-int-max N] \\
        [--codec h265]

serves rtsp://127.0.0.1:8554/cam1 etc., each looping its file forever, and prints one line
`ready rtsp://127.0.0.1:PORT` on stdout once it listens. SIGTERM or SIGINT end it cleanly.
With `--follow-size` the stream's frame size follows the file's: a file whose size changes
midway gives a camera whose stream changes size (the encoder starts again with new parameter
sets), as a camera does when its resolution is changed while it streams.
`--check` only says whether GStreamer and the elements it needs are there (exit status 0/1);
with `--codec h265`, also those of H.265 (x265enc comes with gstreamer1.0-plugins-bad).

How a file becomes a live camera: each mount has a feeder pipeline
`filesrc ! decodebin ! videoconvert [! videoscale ! caps] ! intervideosink channel=C` that plays
the file in real time and seeks back to 0 (a flushing seek) on end of stream. The RTSP media
factory, shared by all clients of that mount, reads
`intervideosrc channel=C ! caps(framerate) ! videorate ! videoconvert ! x264enc ! rtph264pay`
(`x265enc ! rtph265pay` with `--codec h265`): intervideosrc is a live source that repeats the
latest frame at the output rate, so the stream never ends, `--fps` may exceed the file's rate,
and a restart of the file is invisible to clients.
(Looping inside the RTSP media does not work: its end of stream reaches the payloader and clients
are sent BYE.)

Only the standard library is imported at module level; gi is imported when the server runs.
"""

from __future__ import annotations

import argparse
import signal
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HOST = "127.0.0.1"
DEFAULT_FPS = 25  # when the file does not say its frame rate
DEFAULT_BITRATE_KBPS = 2048
PREROLL_TIMEOUT_S = 15
NEEDED_ELEMENTS = (
    "filesrc",
    "decodebin",
    "videoconvert",
    "videoscale",
    "videorate",
    "intervideosink",
    "intervideosrc",
)
# The encoder and payloader of each codec, with the options that make them camera-like: no
# look-ahead or B-frames (zerolatency), parameter sets sent in band with every keyframe.
CODECS = {
    "h264": (
        ("x264enc", "rtph264pay"),
        "x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate} key-int-max={gop} ! "
        "rtph264pay name=pay0 pt=96 config-interval=1",
    ),
    "h265": (
        ("x265enc", "rtph265pay"),
        "x265enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate} key-int-max={gop} ! "
        "rtph265pay name=pay0 pt=96 config-interval=-1",
    ),
}


@dataclass(frozen=True)
class Mount:
    name: str
    path: Path


def parse_mount(text: str) -> Mount:
    name, sep, path = text.partition("=")
    name = name.strip().strip("/")
    if not sep or not name or not path or "/" in name:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH, got {text!r}")
    return Mount(name, Path(path).resolve())


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=8554, help="0: any free port")
    parser.add_argument("--mount", type=parse_mount, action="append", default=[])
    parser.add_argument("--fps", type=int, default=None, help="default: the file's rate")
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--bitrate-kbps", type=int, default=DEFAULT_BITRATE_KBPS)
    parser.add_argument(
        "--key-int-max", type=int, default=None, help="frames between key frames; default: fps"
    )
    parser.add_argument("--codec", choices=sorted(CODECS), default="h264")
    parser.add_argument(
        "--follow-size",
        action="store_true",
        help="let the stream's frame size change when the file's does (default: the first's)",
    )
    parser.add_argument(
        "--login", metavar="USER:PASSWORD", help="ask clients for this login (RTSP basic auth)"
    )
    parser.add_argument("--check", action="store_true", help="only check that it can run")
    args = parser.parse_args(argv)
    if args.check:
        return args
    if not args.mount:
        parser.error("at least one --mount NAME=PATH is needed")
    names = [m.name for m in args.mount]
    if len(set(names)) != len(names):
        parser.error(f"mount names must differ: {names}")
    for mount in args.mount:
        if not mount.path.is_file():
            parser.error(f"no such file: {mount.path}")
    if (args.width is None) != (args.height is None):
        parser.error("--width and --height go together")
    if args.follow_size and args.width is not None:
        parser.error("--follow-size and --width/--height exclude each other")
    if args.fps is not None and args.fps <= 0:
        parser.error("--fps must be positive")
    if args.login is not None and ":" not in args.login:
        parser.error("--login is USER:PASSWORD")
    return args


def load_gst() -> tuple[Any, Any, Any]:
    """Gst, GstRtspServer and GLib; ImportError/ValueError when missing."""
    import gi

    gi.require_version("Gst", "1.0")
    gi.require_version("GstRtspServer", "1.0")
    from gi.repository import GLib, Gst, GstRtspServer

    Gst.init(None)
    return Gst, GstRtspServer, GLib


def check(codec: str = "h264") -> str | None:
    """None when the server can run here with `codec`, else a one-line reason."""
    try:
        gst, _, _ = load_gst()
    except (ImportError, ValueError) as exc:
        return f"GStreamer RTSP server bindings unavailable: {exc}"
    needed = (*NEEDED_ELEMENTS, *CODECS[codec][0])
    missing = [name for name in needed if gst.ElementFactory.find(name) is None]
    if missing:
        return f"GStreamer elements missing: {', '.join(missing)}"
    return None


def _quote(path: Path) -> str:
    return '"' + str(path).replace("\\", "\\\\").replace('"', '\\"') + '"'


class Feeder:
    """Plays one file in a loop, in real time, into an intervideo channel."""

    def __init__(self, gst: Any, mount: Mount, channel: str, size: tuple[int, int] | None):
        self.gst = gst
        self.mount = mount
        self.channel = channel
        scale = ""
        if size is not None:
            scale = f"videoscale ! video/x-raw,width={size[0]},height={size[1]} ! "
        self.pipeline = gst.parse_launch(
            f"filesrc location={_quote(mount.path)} ! decodebin ! videoconvert ! {scale}"
            f"intervideosink name=sink channel={channel} sync=true"
        )
        self.loops = 0

    def start(self) -> tuple[int, int, int, int]:
        """Play to the first frame; width, height and frame rate (num, den) of what it feeds."""
        gst = self.gst
        self.pipeline.set_state(gst.State.PLAYING)
        result, _, _ = self.pipeline.get_state(PREROLL_TIMEOUT_S * gst.SECOND)
        if result == gst.StateChangeReturn.FAILURE:
            raise RuntimeError(f"cannot play {self.mount.path}: {self._bus_error()}")
        if result == gst.StateChangeReturn.ASYNC:
            raise RuntimeError(f"{self.mount.path} did not preroll in {PREROLL_TIMEOUT_S} s")
        caps = self.pipeline.get_by_name("sink").get_static_pad("sink").get_current_caps()
        if caps is None:
            raise RuntimeError(f"no video caps from {self.mount.path}: {self._bus_error()}")
        s = caps.get_structure(0)
        ok_w, width = s.get_int("width")
        ok_h, height = s.get_int("height")
        ok_f, num, den = s.get_fraction("framerate")
        if not (ok_w and ok_h):
            raise RuntimeError(f"no video size in caps {caps.to_string()}")
        if not ok_f or num <= 0 or den <= 0:
            num, den = DEFAULT_FPS, 1
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message", self._on_message)
        return width, height, num, den

    def _bus_error(self) -> str:
        msg = self.pipeline.get_bus().pop_filtered(self.gst.MessageType.ERROR)
        if msg is None:
            return "no error message"
        err, debug = msg.parse_error()
        return f"{err.message} ({debug})"

    def _on_message(self, _bus: Any, msg: Any) -> None:
        gst = self.gst
        if msg.type == gst.MessageType.EOS:
            self.loops += 1
            ok = self.pipeline.seek_simple(
                gst.Format.TIME, gst.SeekFlags.FLUSH | gst.SeekFlags.KEY_UNIT, 0
            )
            if not ok:
                print(f"rtsp_server: cannot loop {self.mount.path}", file=sys.stderr, flush=True)
        elif msg.type == gst.MessageType.ERROR:
            err, debug = msg.parse_error()
            print(
                f"rtsp_server: {self.mount.name}: {err.message} ({debug})",
                file=sys.stderr,
                flush=True,
            )

    def stop(self) -> None:
        self.pipeline.set_state(self.gst.State.NULL)


def serve(args: argparse.Namespace) -> int:
    gst, rtsp, glib = load_gst()
    size = None if args.width is None else (args.width, args.height)
    feeders: list[Feeder] = []
    server = rtsp.RTSPServer()
    server.set_address(HOST)
    server.set_service(str(args.port))
    mounts = server.get_mount_points()
    permissions = None
    if args.login is not None:
        user, password = args.login.split(":", 1)
        auth = rtsp.RTSPAuth()
        token = rtsp.RTSPToken()
        token.set_string("media.factory.role", user)
        auth.add_basic(rtsp.RTSPAuth.make_basic(user, password), token)
        server.set_auth(auth)
        permissions = rtsp.RTSPPermissions()
        permissions.add_permission_for_role(user, "media.factory.access", True)
        permissions.add_permission_for_role(user, "media.factory.construct", True)
    try:
        for index, mount in enumerate(args.mount):
            feeder = Feeder(gst, mount, f"streamer-feed-{index}", size)
            feeders.append(feeder)
            width, height, num, den = feeder.start()
            if args.fps is not None:
                num, den = args.fps, 1
            gop = args.key_int_max or max(1, round(num / den))
            # Caps without a size let intervideosrc renegotiate when the feeder's frames
            # change size, and the encoder restart at the new size.
            frame_size = "" if args.follow_size else f"width={width},height={height},"
            factory = rtsp.RTSPMediaFactory()
            factory.set_launch(
                f"( intervideosrc channel={feeder.channel} ! "
                f"video/x-raw,{frame_size}framerate={num}/{den} ! "
                f"videorate ! videoconvert ! video/x-raw,format=I420 ! "
                + CODECS[args.codec][1].format(bitrate=args.bitrate_kbps, gop=gop)
                + " )"
            )
            factory.set_shared(True)
            if permissions is not None:
                factory.set_permissions(permissions)
            mounts.add_factory(f"/{mount.name}", factory)
    except RuntimeError as exc:
        print(f"rtsp_server: {exc}", file=sys.stderr, flush=True)
        for feeder in feeders:
            feeder.stop()
        return 1

    if server.attach(None) == 0:
        print(f"rtsp_server: cannot listen on {HOST}:{args.port}", file=sys.stderr, flush=True)
        for feeder in feeders:
            feeder.stop()
        return 1

    loop = glib.MainLoop()

    def quit_loop() -> bool:
        loop.quit()
        return False

    for signum in (signal.SIGTERM, signal.SIGINT):
        glib.unix_signal_add(glib.PRIORITY_HIGH, signum, quit_loop)
    print(f"ready rtsp://{HOST}:{server.get_bound_port()}", flush=True)
    loop.run()
    for feeder in feeders:
        feeder.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.check:
        reason = check(args.codec)
        print(reason or "ok", flush=True)
        return 0 if reason is None else 1
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
