"""A private redis-server on a free loopback port, for the demo and the tests.

    python -m tools.local_redis start DIR   # prints redis://127.0.0.1:PORT/0
    python -m tools.local_redis stop DIR

In Python: `with RedisServer(tmp_dir) as server: server.url`. It can also ask for a
password (`password=`), have ACL users (`users={"name": "password"}`), speak only TLS
(`tls=True`: a throwaway CA and server certificate are made with `openssl` in its
folder; `server.url` names the CA in `?ssl_ca_certs=`) and keep its data across a
restart or a SIGKILL (`persist=True`: append-only file, fsync after every write).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import redis

START_TIMEOUT_S = 10.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1 and localhost, signed by it,
    made with the `openssl` command: (CA certificate, server certificate, server key)."""
    if shutil.which("openssl") is None:
        raise RuntimeError("openssl is not installed (Debian: apt-get install openssl)")
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key = folder / "ca.crt", folder / "ca.key"
    cert, key, request = folder / "server.crt", folder / "server.key", folder / "server.csr"
    names = folder / "names.cnf"
    names.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for command in (
        ["req", "-x509", *ec, "-keyout", ca_key, "-out", ca, "-days", "2",
         "-subj", "/CN=streamer test CA"],
        ["req", *ec, "-keyout", key, "-out", request, "-subj", "/CN=localhost"],
        ["x509", "-req", "-in", request, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", cert, "-days", "2", "-extfile", names],
    ):  # fmt: skip
        done = subprocess.run(["openssl", *map(str, command)], capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"openssl {command[0]} failed: {done.stderr.strip()}")
    return ca, cert, key


class RedisServer:
    """One redis-server process, its files kept in `workdir`."""

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        persist: bool = False,
        password: str | None = None,
        users: dict[str, str] | None = None,
        tls: bool = False,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.workdir = Path(workdir)
        self.extra_args = extra_args  # more redis-server arguments (cluster mode)
        self.port = port or free_port()
        self.persist = persist
        self.password = password
        self.users = dict(users or {})
        self.tls = tls
        self._tls_files: tuple[Path, Path, Path] | None = None  # CA, certificate, key
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of the default user (with the password, and the CA with TLS)."""
        return self.url_for(None, self.password)

    def url_for(self, user: str | None, password: str | None) -> str:
        """The URL for logging in as `user` (None: the default user) with `password`."""
        login = ""
        if user is not None or password is not None:
            login = f"{quote(user or '', safe='')}:{quote(password or '', safe='')}@"
        if not self.tls:
            return f"redis://{login}127.0.0.1:{self.port}/0"
        return f"rediss://{login}127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca_cert}"

    @property
    def ca_cert(self) -> Path | None:
        """With TLS, once started: the CA certificate clients must trust."""
        return None if self._tls_files is None else self._tls_files[0]

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
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.workdir),
            "--logfile",
            str(self.workdir / "redis.log"),
            "--save",
            "",
        ]
        if self.persist:
            # Every write on disk before it is confirmed: a SIGKILL loses nothing confirmed.
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += self._listen_args()
        if self.password is not None:
            args += ["--requirepass", self.password]
        for user, password in self.users.items():
            args += ["--user", user, "on", f">{password}", "~*", "&*", "+@all"]
        args += self.extra_args
        self._process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self._wait_until_ready(self._process)
        return self

    def _listen_args(self) -> list[str]:
        if not self.tls:
            return ["--port", str(self.port)]
        if self._tls_files is None:  # kept across restarts: clients go on trusting it
            self._tls_files = make_certificates(self.workdir / "tls")
        ca, cert, key = self._tls_files
        return [
            "--port", "0", "--tls-port", str(self.port),
            "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-ca-cert-file", str(ca), "--tls-auth-clients", "no",
        ]  # fmt: skip

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=0.5, socket_connect_timeout=0.5)
        try:
            deadline = time.monotonic() + START_TIMEOUT_S
            while time.monotonic() < deadline:
                if process.poll() is not None:
                    raise RuntimeError(
                        f"redis-server exited at start; see {self.workdir / 'redis.log'}"
                    )
                try:
                    client.ping()
                    return
                except (redis.ConnectionError, redis.TimeoutError):  # not up, or loading
                    time.sleep(0.05)
        finally:
            client.close()
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

    def kill(self) -> None:
        """SIGKILL, as a crash: no chance to save or to close connections cleanly."""
        if self._process is not None:
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
