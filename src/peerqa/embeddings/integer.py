"""Exact dot products of int8 rows: onnxruntime's integer kernel, else numpy.

Late interaction multiplies a question's few token vectors by every stored token row of its
candidate passages (20,000 rows for the bundled corpus). Widened to float32 that is a skinny
product BLAS runs at a fraction of its speed: 3.6 ms a question, measured. With the question's
rows quantised to int8 too, onnxruntime's unsigned-by-signed 8-bit kernel takes 0.5 ms. Its
sums are exact integers, and so are numpy's in float32 (every partial sum is an integer below
2**24 while ``dim`` is at most ``MAX_DIM``): both ways give the same numbers, bit for bit.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from . import graphs

MAX_DIM = 1040
"""Widest rows whose int8 products stay exact in float32 (127 * 127 * 1040 < 2**24)."""

_session: Any = None
_failed = False
_lock = threading.Lock()


def _options() -> Any:
    """One thread (as the encoder: a question never waits on a thread pool), quiet logs."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return options


def _kernel() -> Any:
    """A one-node onnxruntime session: MatMulInteger of uint8 rows by int8 columns, on one
    thread (as the encoder: a question never waits on a thread pool). None when onnxruntime
    cannot make it; numpy then does the products."""
    global _session, _failed
    with _lock:
        if _session is None and not _failed:
            try:
                import onnxruntime as ort

                _session = ort.InferenceSession(kernel_model(), _options(),
                                                providers=["CPUExecutionProvider"])
            except Exception:  # noqa: BLE001  any failure leaves the exact numpy path
                _failed = True
        return _session


def kernel_model() -> bytes:
    """The kernel's model: ``products = MatMulInteger(rows, columns)``, uint8 rows (n, dim)
    by int8 columns (dim, m), int32 products (n, m); written without importing onnx."""
    return graphs.model(
        "int8_products", [graphs.node("MatMulInteger", ["rows", "columns"], ["products"])],
        [graphs.value_info("rows", graphs.UINT8, ["n", "dim"]),
         graphs.value_info("columns", graphs.INT8, ["dim", "m"])],
        [graphs.value_info("products", graphs.INT32, ["n", "m"])])


def held_model(rows: np.ndarray) -> bytes:
    """A model holding int8 ``rows`` (n, dim) as a constant: ``products =
    MatMulInteger(columns, rows.T)`` for uint8 columns (m, dim), int32 products (m, n)."""
    n, dim = rows.shape
    return graphs.model(
        "held_int8_products", [graphs.node("MatMulInteger", ["columns", "rows"], ["products"])],
        [graphs.value_info("columns", graphs.UINT8, ["m", dim])],
        [graphs.value_info("products", graphs.INT32, ["m", n])],
        [graphs.tensor("rows", np.asarray(rows, dtype=np.int8).T)])  # laid out row-major there


def products(rows: np.ndarray, columns: np.ndarray) -> np.ndarray:
    """``rows @ columns.T`` for int8 ``rows`` (n, dim) and int8 ``columns`` (m, dim), exactly,
    as float32 (n, m)."""
    rows = np.asarray(rows, dtype=np.int8)
    columns = np.asarray(columns, dtype=np.int8)
    if rows.shape[1] != columns.shape[1] or rows.shape[1] > MAX_DIM:
        raise ValueError(f"rows of {rows.shape[1]} and columns of {columns.shape[1]} values "
                         f"(at most {MAX_DIM})")
    kernel = _kernel() if len(rows) and len(columns) else None
    if kernel is None:
        return np.asarray(rows, dtype=np.float32) @ np.asarray(columns, dtype=np.float32).T
    # As uint8 (the kernel's fast form): x + 128 is x's bit pattern with the top bit flipped;
    # the 128 added to every row value is taken back as 128 times each column's sum.
    shifted = np.ascontiguousarray(rows).view(np.uint8) ^ np.uint8(0x80)
    (found,) = kernel.run(["products"], {"rows": shifted,
                                         "columns": np.ascontiguousarray(columns.T)})
    out: np.ndarray = found - 128 * columns.sum(axis=1, dtype=np.int32)[None, :]
    return out.astype(np.float32)


class HeldRows:
    """int8 rows handed once to onnxruntime as a constant, which packs them for its kernel once:
    every later ``products`` multiplies only the few columns given. For a table small enough to
    stay in memory (the bundled corpus's 20,000 token rows, 7.9 MB) that is all of them in
    0.45 ms, where gathering and packing a search's rows each time took about 5 ms. The same
    exact integers as ``products``; numpy's when onnxruntime cannot make the session."""

    def __init__(self, rows: np.ndarray) -> None:
        rows = np.asarray(rows, dtype=np.int8)
        if rows.ndim != 2 or rows.shape[1] > MAX_DIM:
            raise ValueError(f"rows of shape {rows.shape} (2-d, at most {MAX_DIM} values each)")
        self.rows = rows
        self.sums = rows.sum(axis=1, dtype=np.int32)
        self._session: Any = None
        if len(rows):
            try:
                import onnxruntime as ort

                self._session = ort.InferenceSession(held_model(rows), _options(),
                                                     providers=["CPUExecutionProvider"])
            except Exception:  # noqa: BLE001  any failure leaves the exact numpy path
                self._session = None

    def products(self, columns: np.ndarray) -> np.ndarray:
        """``rows @ columns.T`` for int8 ``columns`` (m, dim), exactly, as float32 (n, m)."""
        columns = np.asarray(columns, dtype=np.int8)
        if columns.ndim != 2 or columns.shape[1] != self.rows.shape[1]:
            raise ValueError(f"columns of shape {columns.shape} for rows of "
                             f"{self.rows.shape[1]} values")
        if self._session is None or not len(columns):
            return products(self.rows, columns)
        # The columns as uint8 (x + 128); the 128 added is taken back as 128 times each row's sum.
        shifted = np.ascontiguousarray(columns).view(np.uint8) ^ np.uint8(0x80)
        (found,) = self._session.run(["products"], {"columns": shifted})
        out: np.ndarray = (found - 128 * self.sums[None, :]).T
        return out.astype(np.float32)
