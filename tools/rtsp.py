"""A real RTSP server on a free loopback port, serving video files as endless live cameras.

The server is `tools/rtsp_server.py` (GStreamer's RTSP server), run as a child process of
Debian's /usr/bin/python3, which has the `gi` bindings; this module needs only the standard
library, so the tests' own Python can drive it:

    with RtspServer({"cam1": clip, "cam2": clip}, fps=30) as server:
        url = server.url("cam1")  # rtsp://127.0.0.1:PORT/cam1
        server.kill()             # a crash: clients' streams end, new connections are refused
        server.restart()          # the same port again
        server.freeze()           # SIGSTOP: clients stall until their read timeout
        server.thaw()             # SIGCONT
    RtspServer({"cam1": clip}, codec="h265")  # an H.265 camera (x265enc ! rtph265pay)
    RtspServer({"cam1": clip}, follow_size=True)  # the stream changes size when the file does
    RtspServer({"cam1": clip}, login="viewer:secret")  # asks for a login (RTSP basic auth)

`rtsp_server_available()` says why the server cannot run here (None when it can), for skips.
"""

from __future__ import annotations

import functools
import os
import selectors
import signal
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from tools.local_redis import free_port

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER_SCRIPT = Path(__file__).resolve().with_name("rtsp_server.py")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 5.0
CHECK_TIMEOUT_S = 30.0


@functools.lru_cache(maxsize=2)
def rtsp_server_available(codec: str = "h264") -> str | None:
    """None when /usr/bin/python3 can run the GStreamer RTSP server with `codec` (h264 or
    h265), else a one-line reason."""
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} not found (the RTSP server needs Debian's python3-gi)"
    try:
        proc = subprocess.run(
            [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--check", "--codec", codec],
            capture_output=True,
            text=True,
            timeout=CHECK_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot run {SYSTEM_PYTHON} {SERVER_SCRIPT.name} --check: {exc}"
    if proc.returncode == 0:
        return None
    lines = (proc.stdout.strip() or proc.stderr.strip() or f"exit {proc.returncode}").splitlines()
    return (
        f"{lines[-1]} (Debian: apt-get install python3-gi gir1.2-gst-rtsp-server-1.0 "
        "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gstreamer1.0-libav)"
    )


class RtspServer:
    """One `tools/rtsp_server.py` process; `mounts` maps a mount name to the file it loops."""

    def __init__(
        self,
        mounts: Mapping[str, str | Path],
        *,
        port: int | None = None,
        fps: int | None = None,
        size: tuple[int, int] | None = None,
        bitrate_kbps: int | None = None,
        key_int_max: int | None = None,
        codec: str = "h264",
        follow_size: bool = False,
        login: str | None = None,
        start_timeout_s: float = START_TIMEOUT_S,
    ) -> None:
        """`login`: "USER:PASSWORD" that clients must give (none asked by default)."""
        if not mounts:
            raise ValueError("RtspServer needs at least one mount")
        self.mounts = {name: Path(path) for name, path in mounts.items()}
        self.port = port or free_port()
        self.fps = fps
        self.size = size
        self.bitrate_kbps = bitrate_kbps
        self.key_int_max = key_int_max
        self.codec = codec
        self.follow_size = follow_size
        self.login = login
        self.start_timeout_s = start_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._stderr: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"rtsp://127.0.0.1:{self.port}"

    def url(self, mount: str) -> str:
        if mount not in self.mounts:
            raise KeyError(f"no mount {mount!r}; mounts: {sorted(self.mounts)}")
        return f"{self.base_url}/{mount}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def command(self) -> list[str]:
        args = [SYSTEM_PYTHON, str(SERVER_SCRIPT), "--port", str(self.port)]
        for name, path in self.mounts.items():
            args += ["--mount", f"{name}={path}"]
        if self.fps is not None:
            args += ["--fps", str(self.fps)]
        if self.size is not None:
            args += ["--width", str(self.size[0]), "--height", str(self.size[1])]
        if self.bitrate_kbps is not None:
            args += ["--bitrate-kbps", str(self.bitrate_kbps)]
        if self.key_int_max is not None:
            args += ["--key-int-max", str(self.key_int_max)]
        if self.codec != "h264":
            args += ["--codec", self.codec]
        if self.follow_size:
            args.append("--follow-size")
        if self.login is not None:
            args += ["--login", self.login]
        return args

    def start(self) -> RtspServer:
        """Start the server and wait until it listens; RuntimeError, with its stderr, if not."""
        if self.running:
            raise RuntimeError(f"RTSP server already running (pid {self.pid})")
        self._close_stderr()
        # stderr goes to a file (a pipe nobody reads could fill and block the server), kept
        # open for the server's life and closed by stop().
        self._stderr = tempfile.TemporaryFile(prefix="rtsp-server-", suffix=".err")  # noqa: SIM115
        process = subprocess.Popen(
            self.command(), stdout=subprocess.PIPE, stderr=self._stderr, stdin=subprocess.DEVNULL
        )
        self._process = process
        assert process.stdout is not None
        line = self._read_ready_line(process.stdout)
        if line != f"ready {self.base_url}":
            exited = process.poll()
            self._end(process)
            stderr = self._stderr_text()
            why = (
                f"exited at start with code {exited}"
                if exited is not None
                else f"did not say ready within {self.start_timeout_s:.0f} s (said {line!r})"
            )
            raise RuntimeError(
                f"RTSP server {why}; command: {' '.join(self.command())}; stderr:\n{stderr}"
            )
        # Nothing more comes on stdout; close our end so the server never blocks writing to it.
        process.stdout.close()
        return self

    def _read_ready_line(self, stdout: IO[bytes]) -> str:
        deadline = time.monotonic() + self.start_timeout_s
        data = b""
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            while b"\n" not in data:
                left = deadline - time.monotonic()
                if left <= 0 or not selector.select(timeout=left):
                    break
                chunk = os.read(stdout.fileno(), 4096)
                if not chunk:
                    break
                data += chunk
        return data.split(b"\n", 1)[0].decode(errors="replace").strip()

    def _stderr_text(self) -> str:
        if self._stderr is None:
            return ""
        self._stderr.flush()
        self._stderr.seek(0)
        return self._stderr.read().decode(errors="replace").strip()

    def _close_stderr(self) -> None:
        if self._stderr is not None:
            self._stderr.close()
            self._stderr = None

    def stderr(self) -> str:
        """What the server wrote on stderr so far (since its last start)."""
        return self._stderr_text()

    @staticmethod
    def _end(process: subprocess.Popen[bytes]) -> None:
        if process.poll() is None:
            # A frozen process ignores SIGTERM until it runs again.
            process.send_signal(signal.SIGCONT)
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def stop(self) -> None:
        """Terminate the server (kill it if it does not exit) and wait for it."""
        if self._process is not None:
            self._end(self._process)
        self._process = None
        self._close_stderr()

    def kill(self) -> None:
        """SIGKILL, as in a crash; the port is refused until `restart()`."""
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            if self._process.stdout is not None:
                self._process.stdout.close()

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its sockets but sends nothing."""
        self._signal(signal.SIGSTOP)

    def thaw(self) -> None:
        """SIGCONT after `freeze()`."""
        self._signal(signal.SIGCONT)

    def _signal(self, signum: int) -> None:
        if not self.running:
            raise RuntimeError("RTSP server is not running")
        assert self._process is not None
        self._process.send_signal(signum)

    def restart(self) -> RtspServer:
        """Stop the server if it runs, and start it again on the same port."""
        self.stop()
        return self.start()

    def __enter__(self) -> RtspServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
