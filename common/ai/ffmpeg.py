"""The ffmpeg binary shipped inside the imageio-ffmpeg wheel: every audio conversion runs it."""

from __future__ import annotations

import functools
import os


@functools.cache
def binary() -> str:
    """Found once, on first use: only the code paths that convert audio import imageio_ffmpeg."""
    import imageio_ffmpeg

    return os.fspath(imageio_ffmpeg.get_ffmpeg_exe())
