"""Parameters fitted on the gold set (weights, thresholds, calibrations), shipped with peerqa.

Each component that learns something owns one named section: it reads its section with its own
defaults when the section is absent, and its fitter (in ``evaluation/fitting.py``) writes it.
``peerqa tune`` fits every section on the whole gold set and writes ``tuning.json`` beside this
module; ``peerqa eval --cv 5`` fits them on four folds and scores the fifth, so that no figure
comes from fitting and scoring on the same items.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigurationError

SHIPPED = Path(__file__).resolve().parent / "tuning.json"
SHIPPED_INT8 = SHIPPED.with_name("tuning-int8.json")
"""Fitted with the int8 MiniLM graph (``PEERQA_LOCAL_PRECISION=int8``). Its vectors differ a little
from float32's and so do the features fitted on: with the float32 fit, wrongful partial answers
rose from 0.058 to 0.100 of answerable gold items (measured)."""
FORMAT = 1


def shipped(precision: str = "fp32") -> Path:
    """The tuning peerqa ships for an encoder of this precision."""
    return SHIPPED_INT8 if precision == "int8" else SHIPPED


@dataclass(frozen=True, slots=True)
class Tuning:
    """Fitted parameters by section name ("ranker", "answerability", ...), and their origin."""

    sections: dict[str, dict[str, Any]] = field(default_factory=dict)
    fitted_on: str = ""
    """Which items the parameters were fitted on ("evals/gold.jsonl: 422 items")."""

    def section(self, name: str) -> dict[str, Any]:
        """One component's parameters ({} when it was never fitted: it uses its defaults)."""
        return dict(self.sections.get(name, {}))

    def with_section(self, name: str, values: dict[str, Any]) -> Tuning:
        return Tuning({**self.sections, name: dict(values)}, self.fitted_on)

    def without(self, name: str) -> Tuning:
        """This tuning with one section back on its defaults."""
        return Tuning({k: v for k, v in self.sections.items() if k != name}, self.fitted_on)

    def to_json(self) -> str:
        """Indented JSON with each list of numbers on one line (a matrix: a row per line)."""
        rows: list[str] = []

        def inline(value: Any) -> Any:
            if isinstance(value, dict):
                return {k: inline(v) for k, v in value.items()}
            if isinstance(value, list):
                if value and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                 for x in value):
                    rows.append(json.dumps(value, separators=(",", ":")))
                    return f"\0{len(rows) - 1}\0"
                return [inline(v) for v in value]
            return value

        data = inline({"format": FORMAT, "fitted_on": self.fitted_on, "sections": self.sections})
        text = json.dumps(data, indent=1, sort_keys=True)
        text = re.sub(r'"\\u0000(\d+)\\u0000"', lambda m: rows[int(m.group(1))], text)
        return text + "\n"

    def save(self, path: str | Path) -> Path:
        """Write atomically: a half-written file never replaces a good one."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_text(self.to_json(), encoding="utf-8")
        tmp.replace(path)
        return path


UNTUNED = Tuning()
"""Every component on its defaults: what the fitters start from."""


def load_tuning(path: str | Path | None = None, *, default: Path = SHIPPED) -> Tuning:
    """The tuning at ``path`` (default: ``default``, one shipped with peerqa; untuned if there is
    none)."""
    file = Path(path).expanduser() if path is not None else default
    if path is None and not file.exists():
        return UNTUNED
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"expected format {FORMAT}")
        sections = data.get("sections", {})
        if not isinstance(sections, dict) or not all(isinstance(v, dict)
                                                     for v in sections.values()):
            raise ValueError("'sections' must map names to objects")
        return Tuning(sections, str(data.get("fitted_on", "")))
    except (OSError, ValueError) as e:
        raise ConfigurationError(
            f"the tuning file {file} is unusable ({e}): run `peerqa tune` to write it again, "
            "or point PEERQA_TUNING_FILE at a good one"
        ) from e
