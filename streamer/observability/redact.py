"""URLs as they may be shown: never with a password in them, also inside error messages."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(
    # The password runs to the last "@" before the path: FFmpeg accepts "@" in it.
    r"(?P<scheme>\b[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/\s]*)(?::[^/\s]*)?@"
)

# Secrets given as query options (redis-py reads ?password=, some cameras ?pwd= or ?token=).
_SECRET_OPTIONS = re.compile(
    r"(?P<key>[?&](?:password|passwd|pwd|pass|token|auth)=)[^&\s'\"]*", re.I
)


def redact(text: str) -> str:
    """`text` with the password of every URL in it replaced by `***`.

    >>> redact("rtsp://admin:secret@10.0.0.7/stream1")
    'rtsp://admin:***@10.0.0.7/stream1'
    >>> redact("redis://:secret@localhost:6379/0")
    'redis://:***@localhost:6379/0'
    >>> redact("rtsp://admin:p@ss@10.0.0.7/s")
    'rtsp://admin:***@10.0.0.7/s'
    >>> redact("Connection refused: 'rtsp://u:p@cam/1'")
    "Connection refused: 'rtsp://u:***@cam/1'"
    >>> redact("redis://localhost:6379/0?password=secret&db=1")
    'redis://localhost:6379/0?password=***&db=1'
    """
    text = _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
    return _SECRET_OPTIONS.sub(lambda m: f"{m['key']}***", text)
