"""The README's recipe for a local OpenAI-compatible server (Ollama, llama.cpp, vLLM): the real
``peerqa`` command and the real openai client, over HTTP to a fake server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peerqa import Assistant
from tests.helpers import REPO, TINY
from tests.openai_server import FakeOpenAI, Reply

QUESTION = "How should peer workers be supervised?"
SUPERVISION = "Peer workers need regular supervision from someone who understands peer values"


@pytest.fixture
def local_server() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


def _readme_settings(base_url: str) -> dict[str, str]:
    """The variables the README's local-server section sets, with its values."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("### A local server"):]
    section = section[: section.index("\n## ")]
    found = dict(re.findall(r"^(?:export )?(PEERQA_[A-Z_]+)=(\S+)", section, re.M))
    assert {"PEERQA_ANSWER_MODE", "PEERQA_OPENAI_BASE_URL", "PEERQA_OPENAI_MODEL",
            "PEERQA_OPENAI_TIMEOUT"} <= set(found)
    found["PEERQA_OPENAI_BASE_URL"] = base_url  # the README's is Ollama's, this is the fake's
    return found


def _cite_supervision(body: dict[str, Any]) -> str:
    for n, text in re.findall(r'<source id="(\d+)"[^>]*>\n(.*?)\n</source>',
                              body["messages"][-1]["content"], re.S):
        if "regular supervision" in text:
            return f"{SUPERVISION} [{n}]."
    raise AssertionError("the supervision passage was not sent")


def test_local_server__the_readme_settings_answer_with_no_key(
    local_server: FakeOpenAI, tmp_path: Path
):
    index_dir = tmp_path / "idx"
    Assistant(corpus_dir=TINY, index_dir=index_dir).index()
    local_server.script(Reply(content=_cite_supervision))
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PEERQA_") and k not in {"OPENAI_API_KEY", "OPENAI_BASE_URL"}}
    settings = _readme_settings(local_server.base_url)
    env.update(settings, PEERQA_CORPUS_DIR=str(TINY), PEERQA_INDEX_DIR=str(index_dir))
    r = subprocess.run([sys.executable, "-m", "peerqa", "ask", QUESTION, "--json"],
                       capture_output=True, text=True, env=env, timeout=180)
    assert r.returncode == 0, r.stderr
    answer = json.loads(r.stdout)
    assert answer["mode"] == "openai" and answer["checks"]["fallback"] is None
    assert answer["text"].startswith(SUPERVISION) and answer["citations"]
    (request,) = [q for q in local_server.requests if q["path"].endswith("/chat/completions")]
    assert request["body"]["model"] == settings["PEERQA_OPENAI_MODEL"]
    assert request["headers"]["Authorization"] == "Bearer no-key"  # nothing secret is sent
    if "PEERQA_OPENAI_ANSWER_TOKENS" in settings:
        assert request["body"]["max_tokens"] == int(settings["PEERQA_OPENAI_ANSWER_TOKENS"])
