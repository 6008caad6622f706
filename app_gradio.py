"""Start the peerqa chat app: ``python app_gradio.py`` (or ``make run``), then open the address.

Offline, on http://127.0.0.1:7860 by default (PEERQA_HOST / PEERQA_PORT, or --host / --port).
The first start builds the index with a progress bar; later starts reuse it. The app itself
lives in ``peerqa.app``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

# Before anything imports Gradio: no analytics, no version check, no Hub look-ups.
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

try:
    from peerqa.app import main
except ImportError:  # a checkout without `pip install -e .`
    sys.path.insert(0, str(Path(__file__).resolve().parent / "src"))
    from peerqa.app import main

if __name__ == "__main__":
    sys.exit(main())
