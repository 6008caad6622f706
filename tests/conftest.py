"""Shared fixtures: offline by default, index folders under tmp, the full corpus indexed once."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from peerqa import Assistant
from tests.helpers import ARTIFACTS, CHROMIUM_FLAGS, TINY, FakeEmbedder, chromium_path


@pytest.fixture(scope="session")
def _model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the MiniLM graph, shared by the session's tests and the processes they
    start: the graph is built once (a few seconds), not once per test."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _offline_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, _model_cache: Path) -> None:
    """No key, no user settings, and a private cache, whatever the developer's shell holds."""
    for name in list(os.environ):
        if name.startswith("PEERQA_") or name in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}:
            monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    (tmp_path / "xdg-cache" / "peerqa").mkdir(parents=True)
    (tmp_path / "xdg-cache" / "peerqa" / "models").symlink_to(_model_cache)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("GRADIO_ANALYTICS_ENABLED", "False")


@pytest.fixture(scope="session")
def corpus_index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An index of the bundled corpus, built once per test session."""
    directory = tmp_path_factory.mktemp("corpus-index")
    Assistant(index_dir=directory).index()
    return directory


@pytest.fixture(scope="session")
def assistant(corpus_index_dir: Path) -> Assistant:
    """One Assistant over the bundled corpus, opened once and shared (read-only use)."""
    a = Assistant(index_dir=corpus_index_dir)
    a.index()
    return a


@pytest.fixture
def tiny_corpus(tmp_path: Path) -> Path:
    """A writable copy of the three tiny test documents."""
    target = tmp_path / "tiny-corpus"
    shutil.copytree(TINY, target)
    return target


@pytest.fixture
def tiny_assistant(tiny_corpus: Path, tmp_path: Path) -> Assistant:
    """An Assistant over the tiny corpus with its own index folder."""
    return Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "tiny-index")


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-docs-screenshot", action="store_true", default=False,
        help="copy the README screenshot taken by the browser tests to docs/screenshot.png",
    )


_RUN_FOLDER: list[Path] = []


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    """This run's own folder for screenshots, test-artifacts/run-<date>-<time>-<pid> (printed at
    the end of the run; test-artifacts/latest points at it)."""
    folder = ARTIFACTS / f"run-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    latest = ARTIFACTS / "latest"
    try:
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(folder.name)
    except OSError:  # a file system without symbolic links: the printed path is enough
        pass
    _RUN_FOLDER.append(folder)
    return folder


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for folder in _RUN_FOLDER:
        shots = len(list(folder.glob("*.png")))
        terminalreporter.write_line(f"screenshots of this run ({shots}): {folder}")


@pytest.fixture
def fake_embedder() -> FakeEmbedder:
    """A deterministic embedder that needs no model: hashed, stemmed words."""
    return FakeEmbedder()


@pytest.fixture
def tiny_fake(tiny_corpus: Path, tmp_path: Path, fake_embedder: FakeEmbedder) -> Assistant:
    """The tiny corpus, indexed with the fake embedder (no model is loaded)."""
    a = Assistant(corpus_dir=tiny_corpus, index_dir=tmp_path / "tiny-fake-index",
                  embedder=fake_embedder)
    a.index()
    return a


@pytest.fixture(scope="module")
def browser() -> Iterator:
    """Debian's headless Chromium driven by Playwright (never a browser download), one per test
    module: Playwright's sync API keeps an event loop running in this thread while it is open,
    which later tests that start their own loop (asyncio.run) must not meet."""
    executable = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        instance = p.chromium.launch(executable_path=executable, headless=True,
                                     args=CHROMIUM_FLAGS)
        yield instance
        instance.close()
