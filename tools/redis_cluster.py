"""Redis as a large site runs it, on loopback ports, for the tests: a Redis Cluster of
three masters, and a master watched by a Sentinel.

    with LocalCluster(tmp_dir) as cluster: cluster.url     # redis://127.0.0.1:PORT/0
    with LocalSentinel(tmp_dir) as sentinel: sentinel.url  # redis+sentinel://...
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path
from types import TracebackType

import redis

from tools.local_redis import RedisServer, free_port

READY_TIMEOUT_S = 20.0


class LocalCluster:
    """Three redis-server masters joined into one cluster (all 16384 slots covered)."""

    def __init__(self, workdir: Path, masters: int = 3) -> None:
        self.workdir = Path(workdir)
        self.nodes = [
            RedisServer(
                self.workdir / f"node{i}",
                extra_args=(
                    # The bus port, by default the port + 10000, may not exist: name one.
                    "--cluster-port",
                    str(free_port()),
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    str(self.workdir / f"node{i}" / "nodes.conf"),
                ),
            )
            for i in range(masters)
        ]

    @property
    def url(self) -> str:
        """Any node's URL: a cluster client learns the others from it."""
        return self.nodes[0].url

    def start(self) -> LocalCluster:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise RuntimeError("redis-cli is not installed (Debian: apt-get install redis-tools)")
        try:
            for node in self.nodes:
                node.start()
            addresses = [f"127.0.0.1:{node.port}" for node in self.nodes]
            done = subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", "0",
                 "--cluster-yes"],
                capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            if done.returncode != 0:
                raise RuntimeError(f"redis-cli --cluster create failed: {done.stderr.strip()}")
            self._wait_until_ok()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_until_ok(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT_S
        for node in self.nodes:
            client = redis.Redis(port=node.port)
            try:
                while client.cluster("info").get("cluster_state") != "ok":
                    if time.monotonic() > deadline:
                        raise RuntimeError("the Redis Cluster did not become ready")
                    time.sleep(0.1)
            finally:
                client.close()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class LocalSentinel:
    """A master and one Sentinel watching it under the name `service`."""

    def __init__(self, workdir: Path, service: str = "streamer") -> None:
        self.workdir = Path(workdir)
        self.service = service
        self.master = RedisServer(self.workdir / "master")
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis+sentinel://127.0.0.1:{self.port}/{self.service}/0"

    def start(self) -> LocalSentinel:
        self.master.start()
        folder = self.workdir / "sentinel"
        folder.mkdir(parents=True, exist_ok=True)
        config = folder / "sentinel.conf"  # a Sentinel rewrites its file: one of its own
        config.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {folder}\n"
            f"sentinel monitor {self.service} 127.0.0.1 {self.master.port} 1\n"
        )
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server is not installed")
        self._process = subprocess.Popen(
            [binary, str(config), "--sentinel"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        client = redis.Redis(port=self.port, socket_timeout=0.5, socket_connect_timeout=0.5)
        deadline = time.monotonic() + READY_TIMEOUT_S
        try:
            while True:
                try:
                    if client.execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service):
                        return self
                except (redis.ConnectionError, redis.TimeoutError):
                    pass  # not listening yet
                if time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError("the Sentinel did not come up")
                time.sleep(0.05)
        finally:
            client.close()

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=5)
        self._process = None
        self.master.stop()

    def __enter__(self) -> LocalSentinel:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
