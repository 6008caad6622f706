"""How many threads numpy's BLAS may use, scoped to one call and restored after it.

On small matrix products a multi-threaded OpenBLAS hands work between its threads thousands of
times per call; when other processes hold the cores each hand-off waits for a time slice, and a
question that takes 10 ms quietly takes hundreds. One thread for a question, two for a batch
build (measured 1.44x faster than one on an idle 2-core machine). The limit is set per call,
never globally: outside the scoped calls the process keeps whatever it had.

threadpoolctl finds the BLAS libraries numpy loaded. OpenBLAS ignores ``openblas_set_num_threads``
called from any thread but the main one (measured with OpenBLAS 0.3.31: the app answers on worker
threads), while its ``openblas_set_num_threads_local`` works from any thread; it is used where the
library has it.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from threadpoolctl import ThreadpoolController

QUERY_THREADS = 1
BUILD_THREADS = 2

_lock = threading.Lock()
_libraries: list[tuple[Callable[[], int], Callable[[int], Any]]] | None = None
# BLAS limits are process-wide. Overlapping scoped calls (the app serves questions on several
# threads) share one limit: the first to enter saves the originals, a lower request lowers it (a
# question during a build gets its single thread), and the last to leave restores the originals.
_inside = 0
_limit = 0
_original: list[int] = []


def _setter(lib: Any) -> Callable[[int], Any]:
    """OpenBLAS's thread-safe setter where it has one; else threadpoolctl's."""
    if lib.internal_api == "openblas":
        name = "openblas_set_num_threads_local"
        # scipy-openblas builds export it both with and without their prefix and suffix.
        local = lib._get_symbol(name) or getattr(lib.dynlib, name, None)
        if local is not None:
            local.argtypes, local.restype = [ctypes.c_int], ctypes.c_int
            return local  # type: ignore[no-any-return]
    return lib.set_num_threads  # type: ignore[no-any-return]


def _blas() -> list[tuple[Callable[[], int], Callable[[int], Any]]]:
    """(get, set) of each BLAS library loaded in this process, found once (a few ms)."""
    global _libraries
    if _libraries is None:
        controller = ThreadpoolController().select(user_api="blas")
        _libraries = [(lib.get_num_threads, _setter(lib)) for lib in controller.lib_controllers]
    return _libraries


def blas_threads_now() -> list[int]:
    """The thread count each loaded BLAS library uses at this moment."""
    with _lock:
        return [int(get()) for get, _ in _blas()]


@contextmanager
def blas_threads(n: int) -> Iterator[None]:
    """Run the block with at most ``n`` BLAS threads, then restore the previous limits."""
    global _inside, _limit, _original
    with _lock:
        libraries = _blas()
        if _inside == 0:
            _original = [int(get()) for get, _ in libraries]
            _limit = n + 1  # anything above n: set below
        if n < _limit:
            for _, set_threads in libraries:
                set_threads(n)
            _limit = n
        _inside += 1
    try:
        yield
    finally:
        with _lock:
            _inside -= 1
            if _inside == 0:
                for (_, set_threads), threads in zip(libraries, _original, strict=True):
                    set_threads(threads)
