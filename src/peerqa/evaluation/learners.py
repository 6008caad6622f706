"""The small models the fitters train, in plain numpy: a logistic calibration and a low-rank
query adapter. Each is a pure function of its examples (and a fixed seed)."""

from __future__ import annotations

import numpy as np


def _adam(grad: np.ndarray, state: list[np.ndarray], step: int, lr: float) -> np.ndarray:
    """One Adam step's update for ``grad`` (``state`` holds the two moment estimates)."""
    m, v = state
    m *= 0.9
    m += 0.1 * grad
    v *= 0.999
    v += 0.001 * grad * grad
    update = lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
    return np.asarray(update, dtype=grad.dtype)


def fit_logistic(x: np.ndarray, y: np.ndarray, *, l2: float = 1e-3, steps: int = 50) -> np.ndarray:
    """Logistic regression by Newton's method: weights for the columns of ``x`` (add a column of
    ones for an intercept); ``l2`` keeps it finite on separable data."""
    w = np.zeros(x.shape[1])
    for _ in range(steps):
        p = 1 / (1 + np.exp(-np.clip(x @ w, -40, 40)))
        grad = x.T @ (p - y) + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x + l2 * np.eye(x.shape[1])
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if float(np.abs(delta).max()) < 1e-8:
            break
    return w


def fit_adapter(
    queries: np.ndarray,
    relevant: np.ndarray,
    chunk_vectors: np.ndarray,
    sentence_vectors: np.ndarray | None,
    sentence_chunk: np.ndarray | None,
    *,
    rank: int = 16,
    l2: float = 0.1,
    temperature: float = 0.05,
    steps: int = 200,
    lr: float = 3e-3,
    seed: int = 0,
    offsets: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Low-rank factors (U, V) of W = I + U V^T so that W q scores the relevant chunks (and
    their sentences) highest among all, by softmax over cosine / ``temperature``.

    ``queries`` (n, d) are unit query vectors, ``relevant`` (n, chunks) marks each query's
    relevant chunks; queries without one are skipped. ``l2`` pulls W towards the identity.
    ``offsets`` (n, chunks), when given, are added to each chunk's logit (and to its
    sentences'): what the rest of the ranking already gives each chunk, so that the adapter
    learns what that misses instead of relearning it (a residual fit).
    """
    keep = relevant.any(axis=1)
    q = np.asarray(queries[keep], dtype=np.float32)
    targets = [relevant[keep].astype(np.float32)]
    keys = [np.asarray(chunk_vectors, dtype=np.float32)]
    shifts: list[np.ndarray | None] = [
        None if offsets is None else np.asarray(offsets[keep], dtype=np.float32)]
    if sentence_vectors is not None and sentence_chunk is not None and len(sentence_vectors):
        keys.append(np.asarray(sentence_vectors, dtype=np.float32))
        targets.append(relevant[keep][:, sentence_chunk].astype(np.float32))
        shifts.append(None if shifts[0] is None else shifts[0][:, sentence_chunk])
    targets = [t / np.maximum(t.sum(axis=1, keepdims=True), 1) for t in targets]
    dim = q.shape[1]
    rng = np.random.default_rng(seed)
    u = (rng.standard_normal((dim, rank)) * 0.01).astype(np.float32)
    v = np.zeros((dim, rank), dtype=np.float32)
    states = {"u": [np.zeros_like(u), np.zeros_like(u)], "v": [np.zeros_like(v), np.zeros_like(v)]}
    if not len(q):
        return u * 0, v
    for step in range(1, steps + 1):
        z = q + (q @ v) @ u.T  # W q for every query, without forming W
        grad_z = np.zeros_like(z)
        for key, target, shift in zip(keys, targets, shifts, strict=True):
            logits = z @ key.T / temperature
            if shift is not None:
                logits += shift
            logits -= logits.max(axis=1, keepdims=True)
            p = np.exp(logits)
            p /= p.sum(axis=1, keepdims=True)
            grad_z += (p - target) @ key / temperature
        grad_w = grad_z.T @ q / len(q) + l2 * (u @ v.T)
        gu, gv = grad_w @ v, grad_w.T @ u
        u -= _adam(gu, states["u"], step, lr)
        v -= _adam(gv, states["v"], step, lr)
    return u, v
