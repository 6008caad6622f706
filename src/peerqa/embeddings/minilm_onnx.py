"""all-MiniLM-L6-v2 on onnxruntime: a graph assembled from the pinned weights, cached and verified.

No ONNX file of this model is on PyPI and nothing may come from a hub, so the graph is built here,
op by op with the ``onnx`` package's helpers, from the same float32 weights the numpy reference
encoder uses (``minilm.Model``). It computes what that encoder computes (BERT, mean pooling over
real tokens, L2 normalisation), on length-sorted padded batches with the padding masked out; the
token states before pooling are a second output.

Building takes a second or two, so the graph is written once to the user's cache folder, in a
folder named by the weights' sha256 and the builder's version: the graph, its weights beside it
(onnxruntime maps them instead of copying them) and a record of both files' sha256. Every process
hashes the files before loading them: a damaged or foreign file is rebuilt, never run.
onnxruntime and onnx are imported here only, on first use: they are heavy, and the numpy encoder
stands in when either is missing.

The int8 form (``precision="int8"``, chosen with ``PEERQA_LOCAL_PRECISION``) is onnxruntime's
own dynamic quantization of that graph: every MatMul's weights to int8 with one scale per output
column, the activations quantised at each run. It is made once from the verified float32 graph
(about 2 s) and cached beside it with its own record. On the 2-core EPYC measured (AVX-512 VNNI)
it encodes a 27-token question in 2.7 ms instead of 8.0; its vectors are within cosine 0.97 of
the float32 ones (0.99 on average), so an index made with it has a name of its own.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import secrets
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import ModelError
from .minilm import MODEL_NAME, WEIGHTS_SHA256, Model

GRAPH_VERSION = 3
"""Bump when the graph below changes: the cached file's name carries it."""
OPSET = 17  # LayerNormalization is a standard op from 17 on
IR_VERSION = 8  # read by every onnxruntime since 1.10
_MASKED = 1e9  # added (negated) to the scores of padding keys: exp() of it is exactly 0.0


# --------------------------------------------------------------------------- the graph


class _Graph:
    """Collects nodes and initializers with unique names; a thin layer over ``onnx.helper``."""

    def __init__(self) -> None:
        import onnx
        from onnx import helper, numpy_helper

        self.onnx, self.helper, self.numpy_helper = onnx, helper, numpy_helper
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self._n = 0

    def const(self, name: str, value: np.ndarray | float | Sequence[int]) -> str:
        array = np.asarray(value)
        if array.dtype == np.float64:
            array = array.astype(np.float32)
        self.initializers.append(self.numpy_helper.from_array(array, name))
        return name

    def op(self, kind: str, *inputs: str, **attrs: Any) -> str:
        self._n += 1
        out = f"{kind.lower()}_{self._n}"
        self.nodes.append(self.helper.make_node(kind, list(inputs), [out], **attrs))
        return out

    def linear(self, x: str, w: str, b: str) -> str:
        return self.op("Add", self.op("MatMul", x, w), b)


def build_graph(model: Model) -> Any:
    """The ONNX model (a ModelProto) computing ``minilm.encode`` on padded batches."""
    g = _Graph()
    helper, tp = g.helper, g.onnx.TensorProto
    hidden, heads = model.dim, model.heads
    hd = hidden // heads
    eps = float(model.eps)

    def layer_norm(x: str, gamma: str, beta: str) -> str:
        return g.op("LayerNormalization", x, gamma, beta, axis=-1, epsilon=eps)

    # Embeddings: word + position + token type 0, then LayerNorm.
    seq_len = g.op("Shape", "input_ids", start=1, end=2)
    positions = g.op("Slice", g.const("position", model.position), g.const("zero", [0]), seq_len,
                     g.const("axis0", [0]))
    x = g.op("Gather", g.const("word", model.word), "input_ids")
    x = g.op("Add", g.op("Add", x, positions), g.const("token_type0", model.token_type0))
    x = layer_norm(x, g.const("ln_g", model.ln_g), g.const("ln_b", model.ln_b))
    # The dense layers run on a (tokens, hidden) matrix: onnxruntime then fuses each MatMul and
    # its bias into one Gemm (on 3-D inputs it cannot), saving a pass over every output.
    x = g.op("Reshape", x, g.const("rows", [-1, hidden]))
    batch_seq = g.op("Shape", "input_ids")  # [B, S]

    # Padding keys get -1e9 before the softmax: their weight is exactly zero, as if absent.
    mask = g.op("Cast", "attention_mask", to=tp.FLOAT)  # (B, S)
    bias = g.op("Mul", g.op("Sub", mask, g.const("one", 1.0)), g.const("masked", _MASKED))
    bias = g.op("Unsqueeze", bias, g.const("axes12", [1, 2]))  # (B, 1, 1, S)
    head_shape = g.op("Concat", batch_seq, g.const("heads_hd", [heads, hd]), axis=0)
    flat_shape = g.const("flat_shape", [-1, hidden])
    thirds = g.const("thirds", [hidden, hidden, hidden])

    for i, layer in enumerate(model.layers):
        p = f"l{i}."
        qkv = g.linear(x, g.const(p + "w_qkv", layer.w_qkv), g.const(p + "b_qkv", layer.b_qkv))
        split = f"split_{i}"
        g.nodes.append(helper.make_node("Split", [qkv, thirds],
                                        [f"{split}_q", f"{split}_k", f"{split}_v"], axis=-1))
        # The query columns carry 1/sqrt(head_dim) already (see minilm._build_model).
        q = g.op("Transpose", g.op("Reshape", f"{split}_q", head_shape), perm=[0, 2, 1, 3])
        k_t = g.op("Transpose", g.op("Reshape", f"{split}_k", head_shape), perm=[0, 2, 3, 1])
        v = g.op("Transpose", g.op("Reshape", f"{split}_v", head_shape), perm=[0, 2, 1, 3])
        probs = g.op("Softmax", g.op("Add", g.op("MatMul", q, k_t), bias), axis=-1)
        ctx = g.op("Transpose", g.op("MatMul", probs, v), perm=[0, 2, 1, 3])
        ctx = g.op("Reshape", ctx, flat_shape)
        attn = g.op("Add", g.linear(ctx, g.const(p + "w_o", layer.w_o),
                                    g.const(p + "b_o", layer.b_o)), x)
        x = layer_norm(attn, g.const(p + "ln1_g", layer.ln1_g), g.const(p + "ln1_b", layer.ln1_b))
        h = g.linear(x, g.const(p + "w_in", layer.w_in), g.const(p + "b_in", layer.b_in))
        # Exact (erf) GELU in the form onnxruntime fuses into one kernel.
        erf = g.op("Erf", g.op("Div", h, g.const(p + "sqrt2", math.sqrt(2.0))))
        h = g.op("Mul", g.op("Mul", h, g.op("Add", erf, g.const(p + "one", 1.0))),
                 g.const(p + "half", 0.5))
        out = g.op("Add", g.linear(h, g.const(p + "w_out", layer.w_out),
                                   g.const(p + "b_out", layer.b_out)), x)
        x = layer_norm(out, g.const(p + "ln2_g", layer.ln2_g), g.const(p + "ln2_b", layer.ln2_b))

    x = g.op("Reshape", x, g.op("Concat", batch_seq, g.const("hidden", [hidden]), axis=0))
    # The token states before pooling are a second output, for late interaction (retrieval's
    # token signal): one run gives either, and asking for the pooled vector alone costs nothing.
    g.nodes.append(helper.make_node("Identity", [x], ["token_states"]))
    # Mean over real tokens, then L2 normalisation with sentence-transformers' eps.
    mask3 = g.op("Unsqueeze", mask, g.const("axis2", [2]))
    axis1 = g.const("axis1", [1])
    total = g.op("ReduceSum", g.op("Mul", x, mask3), axis1, keepdims=0)
    pooled = g.op("Div", total, g.op("ReduceSum", mask, axis1, keepdims=1))
    norm = g.op("Sqrt", g.op("ReduceSum", g.op("Mul", pooled, pooled), axis1, keepdims=1))
    norm = g.op("Max", norm, g.const("norm_eps", 1e-12))
    g.nodes.append(helper.make_node("Div", [pooled, norm], ["embeddings"]))

    graph = helper.make_graph(
        g.nodes, f"{MODEL_NAME}-peerqa-v{GRAPH_VERSION}",
        [helper.make_tensor_value_info("input_ids", tp.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info("attention_mask", tp.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info("embeddings", tp.FLOAT, ["batch", hidden]),
         helper.make_tensor_value_info("token_states", tp.FLOAT, ["batch", "seq", hidden])],
        initializer=g.initializers,
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                              producer_name="peerqa")
    proto.ir_version = IR_VERSION
    g.onnx.checker.check_model(proto)
    return proto


# --------------------------------------------------------------------------- the cached files

GRAPH = "graph.onnx"
WEIGHTS = "graph.weights"
RECORD = "record.json"
QUANTIZED = "graph-int8.onnx"
QUANTIZED_RECORD = "record-int8.json"

Precision = Literal["int8", "fp32"]
PRECISIONS: tuple[Precision, ...] = ("int8", "fp32")


def graph_dir(cache_dir: Path) -> Path:
    """Where the graph of the pinned weights is cached: named by their hash and our version."""
    return cache_dir / f"{MODEL_NAME}-{WEIGHTS_SHA256[:16]}-g{GRAPH_VERSION}"


def _sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def verified(folder: Path) -> bool:
    """Whether the cached graph and weights are those its record names, byte for byte."""
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
        if not isinstance(record, dict):
            return False
        expected = {"weights_sha256": WEIGHTS_SHA256, "graph_version": GRAPH_VERSION}
        if any(record.get(k) != v for k, v in expected.items()):
            return False
        files = record.get("files")
        return isinstance(files, dict) and set(files) == {GRAPH, WEIGHTS} and all(
            _sha256(folder / name) == digest for name, digest in files.items()
        )
    except (OSError, ValueError):
        return False


def _write(folder: Path, proto: Any) -> None:
    """Write the graph with its weights beside it (onnxruntime maps them from the file rather
    than copying them: ~50 MB less per process), in a private folder renamed into place whole."""
    import onnx

    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f".{folder.name}.{os.getpid()}.{secrets.token_hex(3)}.tmp")
    try:
        tmp.mkdir()
        onnx.save_model(proto, str(tmp / GRAPH), save_as_external_data=True,
                        all_tensors_to_one_file=True, location=WEIGHTS, size_threshold=1024)
        files = {name: _sha256(tmp / name) for name in (GRAPH, WEIGHTS)}
        record = {"weights_sha256": WEIGHTS_SHA256, "graph_version": GRAPH_VERSION,
                  "files": files}
        (tmp / RECORD).write_text(json.dumps(record, indent=1), encoding="utf-8")
        for name in (GRAPH, WEIGHTS, RECORD):
            with open(tmp / name, "rb") as f:
                os.fsync(f.fileno())
        if folder.exists():  # damaged: readers that opened it verified it first
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    # Graphs of other builder versions or weights would only take 90 MB each: those no process
    # has opened for a week go (a process still running one keeps its mapping). Removing them at
    # once made two installed versions on one machine rebuild their graph at every start, each
    # removing the other's (measured: 0.8 s and 200 MB more per start).
    stale = time.time() - UNUSED_FOR
    for other in folder.parent.glob(f"{MODEL_NAME}-*-g*"):
        with contextlib.suppress(OSError):
            if other != folder and other.is_dir() and _last_used(other) < stale:
                shutil.rmtree(other, ignore_errors=True)


UNUSED_FOR = 7 * 24 * 3600
"""Seconds after which another version's cached graph that no process opened is removed."""


def _last_used(folder: Path) -> float:
    """When a process last opened this cached graph (its record is touched on each open)."""
    return (folder / RECORD).stat().st_mtime if (folder / RECORD).exists() else 0.0


def cached_graph(cache_dir: Path | None, load_model: Callable[[], Model]) -> Path | bytes:
    """The verified cached graph's file, or a fresh build (cached when the folder is writable;
    as bytes when it is not)."""
    folder = graph_dir(cache_dir) if cache_dir is not None else None
    if folder is not None and verified(folder):
        with contextlib.suppress(OSError):
            os.utime(folder / RECORD)  # in use: another version's build keeps it
        return folder / GRAPH
    proto = build_graph(load_model())
    if folder is not None:
        # A cache that cannot be written (read-only home) only costs a build next time; a
        # concurrent build of the same graph may have won the rename.
        with contextlib.suppress(OSError):
            _write(folder, proto)
        if verified(folder):
            return folder / GRAPH
        # Saving moved the weights out of the model: build it again, whole, in memory.
        proto = build_graph(load_model())
    data: bytes = proto.SerializeToString()
    return data


def quantize(graph: Path | bytes) -> bytes:
    """``graph`` with int8 weights: onnxruntime's dynamic quantization, one scale per output
    column of each MatMul (one scale per matrix was measured at cosine 0.88 from float32 at
    worst, against 0.97), activations quantised at each run. Deterministic: the same graph gives
    the same bytes."""
    import onnx

    # Importing the quantizer configures the root logger (a handler at INFO: every library's
    # debug lines would reach the user's terminal), and it suggests pre-processing at warning
    # level: the root logger is put back as it was.
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        root.setLevel(logging.ERROR)
        source: Any = graph if isinstance(graph, Path) else onnx.load_from_string(graph)
        with tempfile.TemporaryDirectory(prefix="peerqa-int8-") as tmp:
            out = Path(tmp) / QUANTIZED
            quantize_dynamic(source, out, weight_type=QuantType.QInt8, per_channel=True)
            return out.read_bytes()
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)


def quantized_verified(folder: Path) -> bool:
    """Whether the cached int8 graph is the one its record names, made from these weights by
    this builder."""
    try:
        record = json.loads((folder / QUANTIZED_RECORD).read_text(encoding="utf-8"))
        return (isinstance(record, dict)
                and record.get("weights_sha256") == WEIGHTS_SHA256
                and record.get("graph_version") == GRAPH_VERSION
                and record.get("sha256") == _sha256(folder / QUANTIZED))
    except (OSError, ValueError):
        return False


def _write_quantized(folder: Path, data: bytes) -> None:
    """The int8 graph, then its record, each written aside and renamed into place."""
    record = {"weights_sha256": WEIGHTS_SHA256, "graph_version": GRAPH_VERSION,
              "sha256": hashlib.sha256(data).hexdigest()}
    for name, body in ((QUANTIZED, data),
                       (QUANTIZED_RECORD, json.dumps(record, indent=1).encode("utf-8"))):
        tmp = folder / f".{name}.{os.getpid()}.{secrets.token_hex(3)}.tmp"
        try:
            with open(tmp, "wb") as f:
                f.write(body)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, folder / name)
        finally:
            with contextlib.suppress(OSError):
                tmp.unlink()


def cached_quantized(cache_dir: Path | None, load_model: Callable[[], Model]) -> Path | bytes:
    """The verified cached int8 graph's file, or a fresh one made from the float32 graph (cached
    when the folder is writable; as bytes when it is not). A verified int8 graph is opened
    without reading the float32 one."""
    folder = graph_dir(cache_dir) if cache_dir is not None else None
    if folder is not None and quantized_verified(folder):
        with contextlib.suppress(OSError):
            os.utime(folder / RECORD)  # in use (see _write): another version's build keeps it
        return folder / QUANTIZED
    data = quantize(cached_graph(cache_dir, load_model))
    if folder is not None and folder.is_dir():
        with contextlib.suppress(OSError):
            _write_quantized(folder, data)
        if quantized_verified(folder):
            return folder / QUANTIZED
    return data


# --------------------------------------------------------------------------- running it


_sessions: dict[Precision, Any] = {}
_session_lock = threading.Lock()


def session(cache_dir: Path | None, load_model: Callable[[], Model],
            precision: Precision = "fp32") -> Any:
    """The process's one single-threaded session of each precision (see ``OnnxEncoder``); built
    on first use.

    One per process whatever the cache folder: every folder holds the same graph of the same
    pinned weights, and a second session would only hold a second copy of them.
    """
    if precision not in PRECISIONS:
        raise ModelError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    with _session_lock:
        if precision not in _sessions:
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = 1
            options.inter_op_num_threads = 1
            options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # No arena: it would keep a build's largest batch (hundreds of MB) for the life of
            # the process; without it, large buffers go back to the system after each run.
            options.enable_cpu_mem_arena = False
            options.log_severity_level = 3  # errors only: no warnings on the user's terminal
            make = cached_quantized if precision == "int8" else cached_graph
            graph = make(cache_dir, load_model)
            try:
                source = str(graph) if isinstance(graph, Path) else graph
                _sessions[precision] = ort.InferenceSession(
                    source, options, providers=["CPUExecutionProvider"])
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise ModelError(f"onnxruntime could not load the MiniLM graph ({exc})") from exc
        return _sessions[precision]


class OnnxEncoder:
    """Token ids in, unit vectors out, on onnxruntime.

    The session runs on one thread: a question's encoding never waits on a thread pool (which is
    what makes latency explode when other processes hold the cores). A batch build gets its two
    threads by running two length-sorted batches at once, which needs no synchronisation between
    the threads within an operator.
    """

    def __init__(self, cache_dir: Path | None, load_model: Callable[[], Model],
                 precision: Precision = "fp32") -> None:
        self.precision = precision
        self._session = session(cache_dir, load_model, precision)

    @staticmethod
    def _padded(seqs: Sequence[Sequence[int]]) -> dict[str, np.ndarray]:
        width = max(len(s) for s in seqs)
        ids = np.zeros((len(seqs), width), dtype=np.int64)
        mask = np.zeros((len(seqs), width), dtype=np.int64)
        for row, s in enumerate(seqs):
            ids[row, : len(s)] = s
            mask[row, : len(s)] = 1
        return {"input_ids": ids, "attention_mask": mask}

    def encode(self, seqs: Sequence[Sequence[int]]) -> np.ndarray:
        """Vectors for one batch of token-id sequences, padded to the longest."""
        (out,) = self._session.run(["embeddings"], self._padded(seqs))
        vectors: np.ndarray = out
        return vectors

    def encode_tokens(self, seqs: Sequence[Sequence[int]]) -> list[np.ndarray]:
        """Each sequence's last-layer token states, (tokens, hidden), padding cut off."""
        (out,) = self._session.run(["token_states"], self._padded(seqs))
        return [np.asarray(out[row, : len(s)]) for row, s in enumerate(seqs)]

    def encode_with_tokens(
        self, seqs: Sequence[Sequence[int]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """``encode`` and ``encode_tokens`` of one batch, from one run."""
        vectors, states = self._session.run(["embeddings", "token_states"], self._padded(seqs))
        return np.asarray(vectors), [np.asarray(states[row, : len(s)])
                                     for row, s in enumerate(seqs)]

    def encode_batches(
        self, batches: Sequence[Sequence[Sequence[int]]], threads: int,
        done: Callable[[int, Any], None], *, tokens: bool = False, both: bool = False,
    ) -> None:
        """Encode every batch, ``threads`` at a time; ``done(i, vectors)`` as each finishes
        (with ``tokens``, ``done(i, token_states)``, a list of arrays; with ``both``,
        ``done(i, (vectors, token_states))``)."""
        encode: Callable[[Sequence[Sequence[int]]], Any] = \
            self.encode_with_tokens if both else self.encode_tokens if tokens else self.encode
        if threads <= 1 or len(batches) <= 1:
            for i, batch in enumerate(batches):
                done(i, encode(batch))
            return
        with ThreadPoolExecutor(max_workers=threads) as pool:
            futures: list[Any] = [pool.submit(encode, batch) for batch in batches]
            for i in range(len(futures)):
                result = futures[i].result()
                futures[i] = None  # a finished batch's output is not kept to the end
                done(i, result)
