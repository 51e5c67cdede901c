"""Telling a camera that is down for a while from one that cannot work as configured: a
refused login, a stream the server does not have, a URL that cannot be opened. The first
kind is an outage, retried quietly; the second needs a person, and is said once, loudly.
"""

from __future__ import annotations

import errno
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit

import av.error

from streamer.events.event import SourceProblem


@dataclass(frozen=True)
class Diagnosis:
    problem: SourceProblem
    advice: str  # what to check, on one line


def diagnose(exc: BaseException, uri: str) -> Diagnosis | None:
    """What a failure to open or read `uri` says about its configuration; None: an outage
    (or nothing known)."""
    if isinstance(exc, (av.error.HTTPUnauthorizedError, av.error.HTTPForbiddenError)):
        return Diagnosis(SourceProblem.UNAUTHORIZED, "the camera refused the login")
    if isinstance(exc, av.error.HTTPNotFoundError):
        return Diagnosis(SourceProblem.NOT_FOUND, "the server has no stream at this path")
    if isinstance(exc, av.error.ProtocolNotFoundError):
        return Diagnosis(SourceProblem.INVALID_URL, "FFmpeg cannot open this kind of URL")
    if isinstance(exc, OSError) and exc.errno == errno.EIO:
        # FFmpeg says only "Input/output error" for a host name that does not resolve.
        host = urlsplit(uri).hostname
        if host and not host_exists(host):
            return Diagnosis(SourceProblem.INVALID_URL, f"the host {host} does not exist")
    return None


def host_exists(host: str) -> bool:
    """False only when DNS says the name does not exist; True when it resolves, and when
    DNS cannot answer now (that is an outage)."""
    try:
        socket.getaddrinfo(host, None)
    except socket.gaierror as exc:
        return exc.errno not in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", None))
    except (OSError, UnicodeError):
        return False
    return True
