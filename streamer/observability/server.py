"""The operator's port: `/metrics` (Prometheus), `/healthz`, `/` (the preview page) and
`/snapshot/<source>.jpg`, served from threads of their own for the life of a run.

Written on the standard library's `ThreadingHTTPServer` rather than prometheus-client's
`start_http_server`, which serves metrics only and cannot be stopped; prometheus-client
still renders the metrics.
"""

from __future__ import annotations

import json
import logging
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from streamer.observability.health import Health
from streamer.observability.metrics import StatsCollector
from streamer.preview.page import page_html
from streamer.runtime.clock import SYSTEM_CLOCK, Clock

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"  # the preview shows camera pictures: opened only on request


class Watched(Protocol):
    """What the server shows of a run: `Pipeline` and `ShardedPipeline`."""

    name: str

    @property
    def source_ids(self) -> list[str]: ...

    def stats(self) -> dict[str, Any]: ...

    def health(self) -> Health: ...

    def snapshot(self, source_id: str) -> bytes: ...


class OperatorServer:
    """Serves one run until `close()`."""

    def __init__(
        self, run: Watched, host: str = DEFAULT_HOST, port: int = 0, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        """Binds at once (OSError when it cannot); `port` 0 takes a free one."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(StatsCollector(run.stats, clock))
        self._httpd = ThreadingHTTPServer((host, port), _handler(run, registry))
        self._httpd.daemon_threads = True  # a slow client never holds the exit up
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="streamer.http", daemon=True
        )

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        host = str(self._httpd.server_address[0])
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}/"

    def start(self) -> None:
        self._thread.start()
        log.info("preview, /healthz and /metrics on %s", self.url)

    def close(self) -> None:
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> OperatorServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _handler(run: Watched, registry: CollectorRegistry) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "streamer"

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if path == "/metrics":
                self._send(HTTPStatus.OK, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path == "/healthz":
                health = run.health()
                status = HTTPStatus.OK if health.healthy else HTTPStatus.SERVICE_UNAVAILABLE
                body = json.dumps(health.to_dict(), indent=1).encode()
                self._send(status, "application/json", body)
            elif path in ("/", "/index.html"):
                body = page_html(run.name, run.source_ids).encode()
                self._send(HTTPStatus.OK, "text/html; charset=utf-8", body)
            elif path.startswith("/snapshot/") and path.endswith(".jpg"):
                self._snapshot(unquote(path.removeprefix("/snapshot/").removesuffix(".jpg")))
            else:
                self._send(HTTPStatus.NOT_FOUND, "text/plain", b"not found\n")

        def _snapshot(self, source_id: str) -> None:
            try:
                jpeg = run.snapshot(source_id)
            except KeyError:
                body = f"no source {source_id!r}\n".encode()
                self._send(HTTPStatus.NOT_FOUND, "text/plain", body)
                return
            self._send(HTTPStatus.OK, "image/jpeg", jpeg)

        def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
