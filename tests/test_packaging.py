"""The wheel carries what an installed peerqa needs: the corpus, the gold set, the app's files."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(REPO)],
        capture_output=True, text=True, timeout=300,
    )
    if result.returncode != 0:
        pytest.fail(f"building the wheel failed:\n{result.stderr[-2000:]}")
    (found,) = out.glob("peerqa-*.whl")
    return found


def test_wheel__carries_corpus_gold_set_tuning_and_static_files(wheel: Path):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "peerqa/_bundled_evals/gold.jsonl" in names
    assert "peerqa/tuning.json" in names  # the fitted adapter and relevance calibration
    assert "peerqa/_bundled_corpus/manifest.json" in names
    assert {"peerqa/static/app.css", "peerqa/static/head.html",
            "peerqa/static/download.js", "peerqa/static/copy.js"} <= names


def test_installed_wheel__finds_its_own_gold_set_and_corpus(wheel: Path, tmp_path: Path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = ("from peerqa.evaluation import default_gold_path, load_gold\n"
            "from peerqa.settings import bundled_corpus_dir\n"
            "import peerqa\n"
            "print(peerqa.__file__)\n"
            "print(default_gold_path())\n"
            "print(len(load_gold(default_gold_path())))\n"
            "print(bundled_corpus_dir())\n")
    env = {**os.environ, "PYTHONPATH": str(site)}
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env,
                         capture_output=True, text=True, check=True, timeout=60).stdout.split()
    assert out[0].startswith(str(site))
    assert out[1] == str(site / "peerqa" / "_bundled_evals" / "gold.jsonl")
    lines = (REPO / "evals" / "gold.jsonl").read_text(encoding="utf-8").splitlines()
    assert int(out[2]) == sum(1 for line in lines if line.strip())
    assert out[3] == str(site / "peerqa" / "_bundled_corpus")
