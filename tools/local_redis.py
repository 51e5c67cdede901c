"""A private redis-server on a free loopback port, for the demo and the tests.

    python -m tools.local_redis start DIR   # prints redis://127.0.0.1:PORT/0
    python -m tools.local_redis stop DIR

In Python: `with RedisServer(tmp_dir) as server: server.url`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process, its files kept in `workdir`."""

    def __init__(self, workdir: Path, port: int | None = None, persist: bool = False) -> None:
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.persist = persist
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError(
                "redis-server is not installed (Debian: apt-get install redis-server)"
            )
        self.workdir.mkdir(parents=True, exist_ok=True)
        args = [
            binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "yes" if self.persist else "no",
        ]
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited at start; see {self.workdir / 'redis.log'}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis-server did not answer on port {self.port}")

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        self._process = None

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _main(argv: list[str]) -> int:
    """start DIR: run a detached server and print its URL; stop DIR: stop it."""
    if len(argv) != 2 or argv[0] not in ("start", "stop"):
        print("usage: python -m tools.local_redis start|stop DIR", file=sys.stderr)
        return 2
    workdir = Path(argv[1])
    pidfile = workdir / "redis.pid"
    if argv[0] == "stop":
        if pidfile.exists():
            subprocess.run(
                ["redis-cli", "-p", pidfile.read_text().split()[1], "shutdown", "nosave"],
                check=False,
                capture_output=True,
            )
            pidfile.unlink()
        return 0
    server = RedisServer(workdir).start()
    # Leave it running for the shell script that asked; `stop` ends it by its port.
    pidfile.write_text(f"{server.pid} {server.port}\n")
    print(server.url)
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
