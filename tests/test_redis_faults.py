"""`streamer run` against a real redis-server that fails: killed mid-run and restarted, a
run killed while Redis is away (with a spool file), and Redis with a password, ACL users
and TLS, including the wrong password and an untrusted certificate at start."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis

from streamer.sinks.spool import DiskSpool
from tests.conftest import (
    DEMO_CONFIDENCE,
    CliResult,
    one_source_pipeline,
    read_events,
    run_with_stats,
    write_pipeline,
)
from tools.local_redis import RedisServer, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

PASSWORD = "s3cret-Pa55"  # a throwaway server's


class Run:
    """`streamer run` in the background, its log in a file (a pipe could fill and block it)."""

    def __init__(self, pipeline: Path, url: str, *args: str) -> None:
        self.log = pipeline.with_suffix(".log")
        self.stats_file = pipeline.with_suffix(".stats.json")
        self.stats_file.unlink(missing_ok=True)
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streamer", "run", str(pipeline), "--redis-url", url,
                 "--stats-json", str(self.stats_file), *args],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "STREAMER_REDIS_URL": ""},
            )  # fmt: skip

    def wait(self, timeout_s: float) -> int:
        return self.process.wait(timeout=timeout_s)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    @property
    def output(self) -> str:
        return self.log.read_text()

    @property
    def stats(self) -> dict[str, Any]:
        return dict(json.loads(self.stats_file.read_text()))


def wait_for_entries(client: redis.Redis, stream: str, n: int, run: Run) -> None:
    deadline = time.monotonic() + 120
    while client.xlen(stream) < n:
        assert run.process.poll() is None, run.output
        assert time.monotonic() < deadline, f"fewer than {n} events in {stream}"
        time.sleep(0.1)


def test_redis_killed_mid_run_and_restarted_loses_no_event(tmp_path, demo_clip, demo_model):
    pipeline = one_source_pipeline(tmp_path, "kill", demo_clip, demo_model, extra=DEMO_CONFIDENCE)
    stream = "streamer:kill:events"
    server = RedisServer(tmp_path / "redis", persist=True).start()
    client = redis.Redis.from_url(server.url)
    run = Run(pipeline, server.url, "--realtime", "--max-frames", "225")  # 15 s of video
    try:
        wait_for_entries(client, stream, 20, run)
        server.kill()  # SIGKILL, in the middle of the run
        time.sleep(3)
        server.start()  # same port, same data folder: what it confirmed is still there
        assert run.wait(120) == 0, run.output
    finally:
        run.stop()
        client.close()
    try:
        client = redis.Redis.from_url(server.url)
        events = read_events(client, stream)
        client.close()
    finally:
        server.stop()
    seqs = [e["seq"] for e in events]
    assert seqs == list(range(1, len(seqs) + 1))  # no gap, no duplicate, in order
    assert events[-1]["type"] == "source_status" and events[-1]["status"] == "ended"
    assert run.stats["events"] == {"emitted": len(seqs), "delivered": len(seqs), "lost": 0}
    assert "Redis cannot take events" in run.output
    assert "Redis takes events again" in run.output


def test_a_run_killed_while_redis_is_away_leaves_its_spool_to_the_next_run(
    tmp_path, demo_clip, demo_model
):
    """With a spool file, what the sink had taken in when the process was killed is
    delivered by the next run: every spooled event once, before the next run's own."""
    spool_file = tmp_path / "spool" / "events.db"
    pipeline = one_source_pipeline(
        tmp_path, "crash", demo_clip, demo_model,
        # The spool path is relative to the pipeline file.
        extra=DEMO_CONFIDENCE + "sink:\n  redis: {spool_path: spool/events.db}\n",
    )  # fmt: skip
    stream = "streamer:crash:events"
    server = RedisServer(tmp_path / "redis", persist=True).start()
    client = redis.Redis.from_url(server.url)
    first = Run(pipeline, server.url, "--realtime")  # the whole clip: 20 s of video
    try:
        wait_for_entries(client, stream, 20, first)
        server.kill()
        time.sleep(3)  # events go on being made, and spooled
        first.process.kill()  # SIGKILL: no flush, no goodbye
        first.wait(30)
    finally:
        first.stop()
        client.close()
        server.stop()

    # What "spooled" means: in the file when the process died.
    spool = DiskSpool(spool_file, 100_000)
    spooled = [json.loads(p.fields["event"]) for p in spool.head(100_000)]
    spool.close()
    assert len(spooled) >= 5, first.output
    assert "Redis cannot take events" in first.output

    server.start()
    try:
        second, stats = run_with_stats(pipeline, server.url, "--max-frames", "5")
        client = redis.Redis.from_url(server.url)
        events = read_events(client, stream)
        client.close()
    finally:
        server.stop()
    assert second.returncode == 0, second.stderr
    assert f"{len(spooled)} events left by an earlier run; delivering them first" in second.stderr
    first_run = spooled[0]["run"]
    assert {e["run"] for e in spooled} == {first_run}
    earlier = [e for e in events if e["run"] == first_run]
    # The first run's events: all it delivered before Redis died, then all it had spooled,
    # each once and in order; then the second run's.
    assert [e["seq"] for e in earlier] == list(range(1, spooled[-1]["seq"] + 1))
    assert [e["id"] for e in earlier[-len(spooled) :]] == [e["id"] for e in spooled]
    assert events[: len(earlier)] == earlier
    later = [e["seq"] for e in events[len(earlier) :]]
    assert later == list(range(1, stats["events"]["emitted"] + 1))
    assert stats["events"]["lost"] == 0
    assert stats["events"]["delivered"] == stats["events"]["emitted"] + len(spooled)
    left = DiskSpool(spool_file, 10)
    assert len(left) == 0  # all delivered
    left.close()


@pytest.mark.parametrize(
    ("options", "user", "password"),
    [
        ({"password": PASSWORD}, None, PASSWORD),
        ({"users": {"camera-writer": PASSWORD}}, "camera-writer", PASSWORD),
        ({"tls": True}, None, None),
        ({"tls": True, "users": {"camera-writer": PASSWORD}}, "camera-writer", PASSWORD),
    ],
    ids=["password", "acl-user", "tls", "tls-acl-user"],
)
def test_events_reach_a_redis_with_a_password_an_acl_user_or_tls(
    tmp_path, demo_clip, demo_model, options, user, password
):
    pipeline = one_source_pipeline(tmp_path, "secure", demo_clip, demo_model, extra=DEMO_CONFIDENCE)
    with RedisServer(tmp_path / "redis", **options) as server:
        url = server.url_for(user, password)
        result, stats = run_with_stats(pipeline, url, "--max-frames", "3")
        client = redis.Redis.from_url(url)
        events = read_events(client, "streamer:secure:events")
        client.close()
    assert result.returncode == 0, result.stderr
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]  # connected, 3 frames, ended
    assert stats["events"] == {"emitted": 5, "delivered": 5, "lost": 0}
    assert PASSWORD not in result.stderr + result.stdout


def one_line_error(result: CliResult) -> str:
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("streamer: error:")]
    assert len(errors) == 1, result.stderr
    assert PASSWORD not in result.stderr + result.stdout
    return errors[0]


def test_a_wrong_password_or_an_untrusted_certificate_fails_at_start(
    tmp_path, demo_clip, demo_model
):
    pipeline = one_source_pipeline(
        tmp_path, "refused", demo_clip, demo_model, extra=DEMO_CONFIDENCE
    )
    # The default user needs a password too: the user named in the URL is the one refused.
    secured = {"password": PASSWORD, "users": {"writer": PASSWORD}, "tls": True}
    with RedisServer(tmp_path / "redis", **secured) as server:
        ca = f"ssl_ca_certs={server.ca_cert}"
        port = server.port

        def start(url: str) -> CliResult:
            return run_with_stats(pipeline, url, "--max-frames", "1")[0]

        wrong = start(f"rediss://writer:{PASSWORD}x@127.0.0.1:{port}/0?{ca}")
        anonymous = start(f"rediss://127.0.0.1:{port}/0?{ca}")
        untrusted = start(f"rediss://writer:{PASSWORD}@127.0.0.1:{port}/0")
        plain = start(f"redis://writer:{PASSWORD}@127.0.0.1:{port}/0")
    line = one_line_error(wrong)
    assert f"rediss://writer:***@127.0.0.1:{port}/0?{ca}: Redis refused the login" in line
    assert "invalid username-password pair" in line
    assert "Redis refused the login" in one_line_error(anonymous)
    line = one_line_error(untrusted)
    assert f"rediss://writer:***@127.0.0.1:{port}/0: Redis unreachable" in line
    assert "CERTIFICATE_VERIFY_FAILED" in line
    assert "Redis unreachable" in one_line_error(plain)  # plain text to a TLS port


def test_a_spool_file_that_cannot_be_used_fails_at_start(
    tmp_path, redis_server, demo_clip, demo_model
):
    (tmp_path / "taken").mkdir()  # a folder where the file should be
    pipeline = one_source_pipeline(
        tmp_path, "nospool", demo_clip, demo_model,
        extra=DEMO_CONFIDENCE + "sink:\n  redis: {spool_path: taken}\n",
    )  # fmt: skip
    result = run_with_stats(pipeline, redis_server.url, "--max-frames", "1")[0]
    line = one_line_error(result)
    assert f"{tmp_path / 'taken'}: event spool file cannot be" in line


def test_a_run_that_starts_before_redis_waits_for_it(tmp_path, demo_clip, demo_model):
    """Services started together: Redis comes up after the pipeline, within wait_s."""
    late = RedisServer(tmp_path / "late")
    path = write_pipeline(
        tmp_path / "p.yaml",
        f"name: late\nsources:\n  - {{id: cam1, uri: '{demo_clip}'}}\n"
        f"model:\n  path: '{demo_model}'\nevents: {{emit: [detections]}}\n"
        f"sink:\n  redis:\n    url: {late.url}\n    wait_s: 30\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", str(path), "--max-frames", "5"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:  # until it says it waits: then Redis comes up
            lines.append(line)
            if "waiting up to 30 s for it (sink.redis.wait_s)" in line:
                break
        late.start()
        _, rest = proc.communicate(timeout=60)
        assert proc.returncode == 0, "".join(lines) + rest
        client = redis.Redis.from_url(late.url)
        assert client.xlen("streamer:late:events") == 5 + 2  # connected, 5 frames, ended
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        late.stop()


def test_ctrl_c_while_waiting_for_redis_exits_130_without_a_traceback(
    tmp_path, demo_clip, demo_model
):
    url = f"redis://127.0.0.1:{free_port()}/0"
    path = write_pipeline(
        tmp_path / "p.yaml",
        f"name: t\nsources:\n  - {{id: cam1, uri: '{demo_clip}'}}\n"
        f"model:\n  path: '{demo_model}'\nsink:\n  redis:\n    url: {url}\n    wait_s: 60\n",
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamer", "run", str(path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        lines = []
        for line in proc.stderr:
            lines.append(line)
            if "waiting up to" in line:
                break
        started = time.monotonic()
        proc.send_signal(signal.SIGINT)
        _, rest = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    stderr = "".join(lines) + rest
    assert proc.returncode == 130, stderr
    assert time.monotonic() - started < 5
    assert "Traceback" not in stderr
    assert "interrupted while starting" in stderr
