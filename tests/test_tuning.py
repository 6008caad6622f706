"""Fitted parameters: saved and loaded whole, fitted in order, cross-validated by item."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from peerqa import ConfigurationError, InputError
from peerqa.assistant import Assistant
from peerqa.evaluation import Evidence, GoldItem
from peerqa.evaluation.cv import cross_validate, folds, format_cv
from peerqa.evaluation.fitting import fit_all
from peerqa.tuning import SHIPPED, SHIPPED_INT8, UNTUNED, Tuning, load_tuning


def _items(n: int) -> list[GoldItem]:
    return [GoldItem(id=f"t-{i:03d}", question="How often should supervision happen?",
                     answer="Monthly.", key_facts=("at least monthly",),
                     evidence=(Evidence("training-guide", "Supervision should happen at least "
                                        "monthly"),), type="factoid") for i in range(n)]


class RecordingFitter:
    """Fits 'the number of items seen' and remembers which items it was shown."""

    section = "recording"

    def __init__(self) -> None:
        self.seen: list[set[str]] = []
        self.tunings: list[Tuning] = []

    def fit(self, assistant: Assistant, items: Sequence[GoldItem]) -> dict[str, Any]:
        self.seen.append({i.id for i in items})
        self.tunings.append(assistant.tuning)
        return {"n": len(items)}


def test_tuning__saves_and_loads_whole(tmp_path):
    t = UNTUNED.with_section("ranker", {"w": [0.5, 0.25]})
    path = t.save(tmp_path / "tuning.json")
    assert load_tuning(path) == Tuning({"ranker": {"w": [0.5, 0.25]}}, "")
    assert load_tuning(path).section("other") == {}
    path.write_text('{"format": 99}', encoding="utf-8")
    with pytest.raises(ConfigurationError, match="peerqa tune"):
        load_tuning(path)


def test_shipped_tuning__the_one_fitted_with_the_encoder_in_use(tmp_path):
    """The int8 graph's vectors differ from float32's: each has its own fitted tuning."""
    fp32, int8 = load_tuning(SHIPPED), load_tuning(SHIPPED_INT8)
    assert fp32.sections.keys() == int8.sections.keys() and fp32 != int8
    assert Assistant(index_dir=tmp_path).tuning == fp32
    assert Assistant(index_dir=tmp_path, local_precision="int8").tuning == int8
    assert Assistant(index_dir=tmp_path, local_precision="int8",
                     tuning_file=SHIPPED).tuning == fp32  # a file asked for wins


def test_tuning__a_matrix_is_written_a_row_per_line_and_reads_back_exactly(tmp_path):
    matrix = [[0.1, -2.5e-07, 3.0], [1.0, 2.0, 0.333333333333]]
    t = UNTUNED.with_section("adapter", {"u": matrix, "rank": 2, "on": True})
    text = t.to_json()
    assert "[0.1,-2.5e-07,3.0]" in text and "[1.0,2.0,0.333333333333]" in text
    assert load_tuning(t.save(tmp_path / "t.json")) == t


def test_folds__partition_the_items_the_same_way_every_time():
    items = _items(23)
    first = folds(items, 5)
    assert first == folds(items, 5)
    assert sorted(i for f in first for i in f) == list(range(23))
    assert sorted(len(f) for f in first) == [4, 4, 5, 5, 5]
    assert folds(items, 5, seed=1) != first
    with pytest.raises(InputError, match="folds"):
        folds(items, 1)


def test_cross_validate__never_fits_on_the_items_it_scores(tiny_fake):
    items = _items(10)
    fitter = RecordingFitter()
    cv = cross_validate(tiny_fake, items, k=5, fitters=[fitter])
    assert len(fitter.seen) == 5 and cv.fitted == ["recording"]
    for seen, run in zip(fitter.seen, cv.runs, strict=True):
        scored = {r.id for r in run.items}
        assert scored and not scored & seen and len(seen | scored) == 10
    assert cv.pooled["items"] == 10
    assert "fold 5" in format_cv(cv) and "recording" in format_cv(cv)


def test_fit_all__each_fitter_sees_the_sections_fitted_before_it(tiny_fake):
    first, second = RecordingFitter(), RecordingFitter()
    second.section = "second"
    tuning = fit_all(tiny_fake, _items(3), fitters=[first, second])
    assert tuning.section("recording") == {"n": 3} and tuning.section("second") == {"n": 3}
    assert first.tunings[0].sections == {}
    assert second.tunings[0].section("recording") == {"n": 3}


def test_with_tuning__shares_the_open_index(tiny_fake):
    tuned = tiny_fake.with_tuning(UNTUNED.with_section("x", {"a": 1}))
    assert tuned.tuning.section("x") == {"a": 1} and tiny_fake.tuning.section("x") == {}
    assert tuned.retriever.generation is tiny_fake.retriever.generation
    assert tuned.retriever.tuning is tuned.tuning
    assert tuned.ask("How often should supervision happen?").citations
