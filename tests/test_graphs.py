"""The one-node ONNX models written without onnx: the same messages onnx.helper builds, and a
fresh process answers a question without importing onnx."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from peerqa.embeddings import graphs, integer


def _built(graph: onnx.GraphProto) -> onnx.ModelProto:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    return model


def test_kernel_model__is_the_model_onnx_helper_builds():
    expected = _built(helper.make_graph(
        [helper.make_node("MatMulInteger", ["rows", "columns"], ["products"])],
        "int8_products",
        [helper.make_tensor_value_info("rows", TensorProto.UINT8, ["n", "dim"]),
         helper.make_tensor_value_info("columns", TensorProto.INT8, ["dim", "m"])],
        [helper.make_tensor_value_info("products", TensorProto.INT32, ["n", "m"])]))
    written = onnx.ModelProto.FromString(integer.kernel_model())
    assert written == expected
    onnx.checker.check_model(written)


def test_held_model__holds_the_rows_as_onnx_helper_would():
    rows = np.random.default_rng(2).integers(-127, 128, (300, 40)).astype(np.int8)
    expected = _built(helper.make_graph(
        [helper.make_node("MatMulInteger", ["columns", "rows"], ["products"])],
        "held_int8_products",
        [helper.make_tensor_value_info("columns", TensorProto.UINT8, ["m", 40])],
        [helper.make_tensor_value_info("products", TensorProto.INT32, ["m", 300])],
        [numpy_helper.from_array(np.ascontiguousarray(rows.T), "rows")]))
    written = onnx.ModelProto.FromString(integer.held_model(rows))
    assert written == expected
    onnx.checker.check_model(written)
    assert np.array_equal(numpy_helper.to_array(written.graph.initializer[0]), rows.T)


def test_varints__as_protobuf_writes_them():
    for value in (0, 1, 127, 128, 300, 2**31, 2**63 - 1):
        written = onnx.TensorProto.FromString(graphs._number(1, value))  # dims
        assert list(written.dims) == [value]
    assert list(onnx.TensorProto.FromString(graphs._number(1, -5)).dims) == [-5]
    with pytest.raises(ValueError, match="element type"):
        graphs.tensor("x", np.zeros(3, np.float64))


def test_a_fresh_process_answers_without_importing_onnx(corpus_index_dir: Path):
    # Importing onnx (and ml_dtypes with it) was about half of a fresh `peerqa ask`.
    script = (
        "import sys\n"
        "from peerqa import Assistant\n"
        f"a = Assistant(index_dir={str(corpus_index_dir)!r})\n"
        "a.ask('What training do peer workers need?')\n"
        "a.ask('How often should peer workers get supervision?')\n"  # rows held from here on
        "assert a.retriever.late is not None and a.retriever.late.held is not None\n"
        "assert a.retriever.late.held._session is not None\n"
        "print(sorted(m for m in sys.modules if m == 'onnx' or m.startswith('onnx.')))\n"
    )
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    # The first start on a machine assembles the encoder's graph once, with onnx; then cached.
    warm = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert warm.returncode == 0, warm.stderr[-2000:]
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stderr[-3000:]
