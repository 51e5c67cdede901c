"""Source and Redis URLs as they may be shown: never with a password in them."""

from __future__ import annotations

import re

_CREDENTIALS = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:@/]*)(?::[^@/]*)?@")


def redact(url: str) -> str:
    """`url` with any password in it replaced by `***`.

    >>> redact("rtsp://admin:secret@10.0.0.7/stream1")
    'rtsp://admin:***@10.0.0.7/stream1'
    >>> redact("redis://:secret@localhost:6379/0")
    'redis://:***@localhost:6379/0'
    """
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", url)
