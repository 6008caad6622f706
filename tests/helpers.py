"""Helpers shared by the tests: paths, free ports, and processes started on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from peerqa.embeddings import BaseEmbedder
from peerqa.embeddings.base import Progress
from peerqa.text import tokenize

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parent / "data"
TINY = DATA / "tiny"
ARTIFACTS = REPO / "test-artifacts"


class FakeEmbedder(BaseEmbedder):
    """Deterministic vectors without a model: each stemmed word adds a fixed random direction.

    Texts that share words point the same way, so retrieval and answering tests can reason about
    similarity without loading MiniLM.
    """

    name = "fake:hashed-words"
    dim = 64

    def __init__(self) -> None:
        self.calls: list[int] = []
        self.built: list[int] = []  # the calls of index builds (they report progress)
        self._directions: dict[str, np.ndarray] = {}

    def _direction(self, token: str) -> np.ndarray:
        v = self._directions.get(token)
        if v is None:
            seed = int.from_bytes(hashlib.sha256(token.encode("utf-8")).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            v = self._directions[token] = v / np.linalg.norm(v)
        return v

    def embed_documents(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> np.ndarray:
        self.calls.append(len(texts))
        if progress is not None:
            self.built.append(len(texts))
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            for token in tokenize(text):
                out[i] += self._direction(token)
            norm = np.linalg.norm(out[i])
            out[i] = out[i] / norm if norm else np.full(self.dim, self.dim**-0.5)
        if progress is not None:
            progress(len(texts))
        return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop(process, timeout: float = 15.0) -> None:
    """Terminate a process we started, then kill it if it will not go."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def wait_for_http(url: str, timeout: float = 60.0, proc=None) -> None:
    """Poll ``url`` until it answers (any HTTP status), at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout} s: {last}")


# -- a real app process ------------------------------------------------------------------------

HOSTILE = "<script>alert(1)</script> <img src=x onerror=alert(1)> [click](javascript:alert(1))"
ANSWERABLE = "What training do peer support workers need?"
START_SECONDS = 90

@dataclass
class RunningApp:
    url: str
    port: int
    process: subprocess.Popen
    log: Path

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")


def app_env(workdir: Path, **settings: str) -> dict[str, str]:
    """The environment of an app process: offline, no user settings, the given PEERQA_ ones."""
    dropped = {"OPENAI_API_KEY", "OPENAI_BASE_URL"}
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PEERQA_", "GRADIO_")) and k not in dropped
    }
    src = str(REPO / "src")
    env.update(
        PYTHONPATH=src + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ""),
        PYTHONUNBUFFERED="1",
        HF_HUB_OFFLINE="1",
        GRADIO_ANALYTICS_ENABLED="False",
        XDG_CACHE_HOME=str(workdir / "xdg-cache"),
    )
    env.update({f"PEERQA_{k.upper()}": v for k, v in settings.items()})
    return env


@contextlib.contextmanager
def running_app(workdir: Path, **settings: str) -> Iterator[RunningApp]:
    """``python app_gradio.py`` on a free 127.0.0.1 port, from the repository root as ``make run``
    does; yields once the page answers, stops the process afterwards."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = free_port()
    log = workdir / "app.log"
    env = app_env(workdir, host="127.0.0.1", port=str(port), **settings)
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "app_gradio.py")],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    app = RunningApp(f"http://127.0.0.1:{port}", port, process, log)
    try:
        deadline = time.monotonic() + START_SECONDS
        while True:
            if process.poll() is not None:
                pytest.fail(f"the app exited with {process.returncode}:\n{app.output()}")
            if time.monotonic() > deadline:
                pytest.fail(f"the app was not ready in {START_SECONDS} s:\n{app.output()}")
            with contextlib.suppress(OSError):
                if "peerqa: ready at" in app.output() and get(app, "/config")[0] == 200:
                    break
            time.sleep(0.25)
        yield app
    finally:
        stop(process)


def get(app: RunningApp, path: str, method: str = "GET") -> tuple[int, bytes]:
    """One request with the path sent exactly as written (no client-side normalising)."""
    conn = http.client.HTTPConnection("127.0.0.1", app.port, timeout=10)
    try:
        conn.request(method, path, body=b"x" if method == "POST" else None)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# -- damage and processes for the reliability tests --------------------------------------------

DAMAGE_MODES = ("truncate", "garble", "delete")


def damage(path: Path, mode: str, seed: int = 0) -> None:
    """Damage a file as disks and people do: cut it in half, overwrite its middle with random
    bytes (same size), or delete it."""
    if mode == "delete":
        path.unlink()
        return
    size = path.stat().st_size
    with open(path, "r+b") as f:
        if mode == "truncate":
            f.truncate(size // 2)
        elif mode == "garble":
            count = max(1, min(4096, size // 3))
            f.seek((size - count) // 2)
            f.write(np.random.default_rng(seed).integers(0, 256, count, dtype=np.uint8).tobytes())
        else:
            raise ValueError(mode)


FAKE_PEERQA = Path(__file__).resolve().parent / "fake_peerqa.py"


def fake_peerqa(*args: str, timeout: float = 120, **env: str) -> subprocess.CompletedProcess:
    """``tests/fake_peerqa.py`` (peerqa with the fake embedder) in a new process."""
    environ = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + str(REPO / "src"), **env}
    return subprocess.run([sys.executable, str(FAKE_PEERQA), *args], capture_output=True,
                          text=True, timeout=timeout, env=environ, cwd=REPO)


def synthetic_corpus(folder: Path, documents: int, paragraphs: int, seed: int = 7) -> Path:
    """A generated corpus: ``documents`` files of ``paragraphs`` sections of about 100 words
    (one chunk each), with words drawn from a fixed vocabulary so every chunk differs."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"{a}{b}" for a in ("peer", "team", "care", "ward", "plan", "role", "shift",
                                      "staff", "trust", "group") for b in range(60)]
    folder.mkdir(parents=True, exist_ok=True)
    for d in range(documents):
        sections = []
        for p in range(paragraphs):
            sentences = [" ".join(rng.choice(vocabulary, 19)).capitalize() + "."
                         for _ in range(5)]
            sections.append(f"## Section {d}-{p}\n\n" + " ".join(sentences))
        (folder / f"doc-{d:02d}.md").write_text(f"# Document {d}\n\n" + "\n\n".join(sections),
                                                encoding="utf-8")
    return folder
