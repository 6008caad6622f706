"""One-node ONNX models written as protobuf bytes, without importing ``onnx``.

The integer kernel of late interaction (``embeddings.integer``) is a single MatMulInteger node.
Building it with ``onnx.helper`` meant importing ``onnx``, which loads ``ml_dtypes`` and its
compiled extensions: about 0.6 s of a fresh ``peerqa ask`` (1.3 s in all on a 2-core Xeon),
for a model of a few dozen bytes. The few messages it needs are written here by hand, field
numbers as in onnx's ``onnx.proto``; the tests parse them with ``onnx`` and compare them with
what ``onnx.helper`` builds.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

UINT8, INT8, INT32 = 2, 3, 6
"""``TensorProto.DataType`` values of the element types used."""
_TYPES = {np.dtype(np.uint8): UINT8, np.dtype(np.int8): INT8, np.dtype(np.int32): INT32}
IR_VERSION = 7
OPSET = 13

Dim = int | str
"""A fixed size, or the name of a size given at run time."""


def _varint(value: int) -> bytes:
    out = bytearray()
    value &= (1 << 64) - 1  # a negative int64 as protobuf writes it: ten bytes
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _number(field: int, value: int) -> bytes:
    return _varint(field << 3) + _varint(value)


def _bytes(field: int, value: bytes) -> bytes:
    return _varint(field << 3 | 2) + _varint(len(value)) + value


def _text(field: int, value: str) -> bytes:
    return _bytes(field, value.encode("utf-8"))


def value_info(name: str, elem_type: int, shape: Sequence[Dim]) -> bytes:
    """A ``ValueInfoProto``: a graph input's or output's name, element type and shape."""
    dims = b"".join(_bytes(1, _number(1, d) if isinstance(d, int) else _text(2, d))
                    for d in shape)
    tensor = _number(1, elem_type) + _bytes(2, dims)
    return _text(1, name) + _bytes(2, _bytes(1, tensor))


def tensor(name: str, array: np.ndarray) -> bytes:
    """A ``TensorProto`` holding ``array`` (row-major, as its raw bytes)."""
    array = np.ascontiguousarray(array)
    if array.dtype not in _TYPES:
        raise ValueError(f"no ONNX element type here for {array.dtype}")
    out = b"".join(_number(1, d) for d in array.shape)
    return out + _number(2, _TYPES[array.dtype]) + _text(8, name) + _bytes(9, array.tobytes())


def node(op_type: str, inputs: Sequence[str], outputs: Sequence[str]) -> bytes:
    """A ``NodeProto`` with no attributes."""
    return (b"".join(_text(1, i) for i in inputs) + b"".join(_text(2, o) for o in outputs)
            + _text(4, op_type))


def model(name: str, nodes: Sequence[bytes], inputs: Sequence[bytes],
          outputs: Sequence[bytes], initializers: Sequence[bytes] = ()) -> bytes:
    """A serialised ``ModelProto``: the graph of ``nodes``, IR version 7, default opset 13."""
    graph = (b"".join(_bytes(1, n) for n in nodes) + _text(2, name)
             + b"".join(_bytes(5, t) for t in initializers)
             + b"".join(_bytes(11, i) for i in inputs)
             + b"".join(_bytes(12, o) for o in outputs))
    opset = _text(1, "") + _number(2, OPSET)
    return _number(1, IR_VERSION) + _bytes(7, graph) + _bytes(8, opset)
