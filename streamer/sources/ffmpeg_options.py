"""Whether FFmpeg knows an option by name, as `ffmpeg` itself checks its flags.

FFmpeg silently ignores options it does not know, and PyAV does not say which ones went
unused when it opens an input, so a misspelt or retired option (`stimeout`, renamed
`timeout` in FFmpeg 5) would quietly do nothing. This asks FFmpeg's option tables
(`av_opt_find` over the format context, every demuxer and protocol, and the codec
context) through ctypes, in the FFmpeg libraries PyAV loaded: PyAV does not expose them.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable, Iterable
from pathlib import Path

import av

log = logging.getLogger(__name__)

AV_OPT_SEARCH_CHILDREN = 1  # libavutil/opt.h
AV_OPT_SEARCH_FAKE_OBJ = 2


def _library(name: str) -> ctypes.CDLL | None:
    """PyAV's own copy of an FFmpeg library (a wheel bundles them beside the package),
    else the system's."""
    bundled = sorted((Path(av.__file__).parent.parent / "av.libs").glob(f"lib{name}-*.so*"))
    path = str(bundled[0]) if bundled else ctypes.util.find_library(name)
    if path is None:
        return None
    try:
        return ctypes.CDLL(path)
    except OSError:
        return None


@functools.cache
def _known() -> Callable[[str], bool] | None:
    """A test for an option name; None when FFmpeg's libraries cannot be asked here."""
    avformat, avcodec, avutil = _library("avformat"), _library("avcodec"), _library("avutil")
    if avformat is None or avcodec is None or avutil is None:
        return None
    avformat.avformat_get_class.restype = ctypes.c_void_p
    avcodec.avcodec_get_class.restype = ctypes.c_void_p
    find = avutil.av_opt_find
    find.restype = ctypes.c_void_p
    find.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_int, ctypes.c_int]
    # A "fake object" is a pointer to a class: what `ffmpeg` passes to check a flag.
    classes = [
        ctypes.c_void_p(avformat.avformat_get_class()),
        ctypes.c_void_p(avcodec.avcodec_get_class()),
    ]
    flags = AV_OPT_SEARCH_CHILDREN | AV_OPT_SEARCH_FAKE_OBJ

    def known(name: str) -> bool:
        key = name.encode()
        return any(find(ctypes.byref(c), key, None, 0, flags) for c in classes)

    return known


def unknown_options(names: Iterable[str]) -> list[str]:
    """The names among `names` that no FFmpeg demuxer, protocol or decoder has (none when
    FFmpeg cannot be asked)."""
    known = _known()
    if known is None:
        log.debug("cannot read FFmpeg's option tables here; ffmpeg_options are not checked")
        return []
    return [name for name in names if not known(name)]
