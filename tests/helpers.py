"""Helpers shared by the tests: paths, free ports, and processes started on 127.0.0.1."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from html import unescape
from html.parser import HTMLParser
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


class FakeTokenEmbedder(FakeEmbedder):
    """The fake embedder that also gives token vectors: each content word's stem direction, so
    late interaction scores the share of a question's words a chunk holds."""

    token_version = "fake:stems"

    def __init__(self) -> None:
        super().__init__()
        self.token_calls: list[int] = []

    def embed_tokens(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> list[np.ndarray]:
        self.token_calls.append(len(texts))
        out = [np.stack([self._direction(t) for t in tokenize(text)]) if tokenize(text)
               else np.zeros((0, self.dim), np.float32) for text in texts]
        if progress is not None:
            progress(len(texts))
        return out

    def embed_query_tokens(self, text: str) -> tuple[np.ndarray, np.ndarray]:
        return self.embed_query(text), self.embed_tokens([text])[0]

    def embed_documents_and_tokens(
        self, texts: Sequence[str], progress: Progress | None = None
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        return self.embed_documents(texts), self.embed_tokens(texts, progress)


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


# -- HTML as a browser reads it ----------------------------------------------------------------


def visible_text(html: str) -> str:
    return unescape(re.sub(r"<[^>]+>", "", html))


class _Texts(HTMLParser):
    """The text content of each element with a given class, as a browser's textContent."""

    VOID = {"br", "img", "hr", "input", "meta", "link"}

    def __init__(self, cls: str) -> None:
        super().__init__(convert_charrefs=True)
        self.cls, self.stack, self.found = cls, [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.VOID:
            return
        classes = (dict(attrs).get("class") or "").split()
        self.stack.append(len(self.found) if self.cls in classes else None)
        if self.cls in classes:
            self.found.append("")

    def handle_endtag(self, tag):
        if tag not in self.VOID and self.stack:
            self.stack.pop()

    def handle_data(self, data):
        for i in {i for i in self.stack if i is not None}:
            self.found[i] += data


def texts_by_class(html: str, cls: str) -> list[str]:
    parser = _Texts(cls)
    parser.feed(html)
    return parser.found


# -- the browser ------------------------------------------------------------------------------

CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
WAIT_MS = 30_000


def chromium_path() -> str:
    """Debian's chromium (never a browser download); skips the test where it is missing."""
    path = shutil.which("chromium") or (
        "/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None
    )
    if path is None:
        reason = "Debian's chromium is not installed (apt-get install chromium; `make browser`)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return path


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


# -- PDF and Word files, written at test time --------------------------------------------------

def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def write_pdf(path: Path, pages: Sequence[Sequence[str]], title: str | None = None) -> Path:
    """A PDF written by hand: each page's lines in Helvetica (a text layer pypdf can read); a
    page given no lines gets a drawn rectangle only, as a scanned page has no text."""
    objects: list[bytes] = []

    def add(body: str | bytes) -> int:
        objects.append(body.encode("latin-1") if isinstance(body, str) else body)
        return len(objects)

    catalog = add("")  # filled in below, once the page tree's number is known
    font = add("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    tree = len(objects) + 1 + 2 * len(pages)
    for lines in pages:
        if lines:
            ops = "BT /F1 11 Tf 14 TL 72 740 Td " + " ".join(
                f"{_pdf_string(line)} Tj T*" for line in lines) + " ET"
        else:
            ops = "0.2 g 72 72 400 600 re f"
        stream = ops.encode("latin-1")
        content = add(b"<< /Length %d >>\nstream\n" % len(stream) + stream + b"\nendstream")
        kids.append(add(f"<< /Type /Page /Parent {tree} 0 R /MediaBox [0 0 612 792] "
                        f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"))
    assert add(f"<< /Type /Pages /Kids [{' '.join(f'{k} 0 R' for k in kids)}] "
               f"/Count {len(kids)} >>") == tree
    objects[catalog - 1] = f"<< /Type /Catalog /Pages {tree} 0 R >>".encode()
    info = add(f"<< /Title {_pdf_string(title)} >>") if title else None
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % n + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % o for o in offsets)
    trailer = f"<< /Size {len(objects) + 1} /Root {catalog} 0 R"
    trailer += f" /Info {info} 0 R >>" if info else " >>"
    out += b"trailer\n" + trailer.encode() + b"\nstartxref\n%d\n%%%%EOF\n" % xref
    path.write_bytes(bytes(out))
    return path


def write_docx(path: Path, blocks: Sequence[tuple[str, str]], title: str | None = None) -> Path:
    """A Word file written with python-docx: ("heading1"/"heading2", text), ("para", text) or
    ("table", "a|b;c|d") blocks in order."""
    import docx

    document = docx.Document()
    if title is not None:
        document.core_properties.title = title
    for kind, text in blocks:
        if kind.startswith("heading"):
            document.add_heading(text, level=int(kind[-1]))
        elif kind == "table":
            rows = [r.split("|") for r in text.split(";")]
            table = document.add_table(rows=len(rows), cols=len(rows[0]))
            for i, row in enumerate(rows):
                for j, cell in enumerate(row):
                    table.cell(i, j).text = cell
        else:
            document.add_paragraph(text)
    document.save(str(path))
    return path


# -- the app in this process, with hand-made answers for chosen questions -------------------------


class ScriptedAssistant:
    """The real Assistant, except that chosen questions get hand-made answers.

    The app shows them through the same Handlers, rendering and server as a real answer, so the
    look of what other issues add to ``Answer`` (coverage, conflicts, relevance) can be tested
    before the answerers produce it.
    """

    def __init__(self, real, answers: dict | None = None) -> None:
        self.real = real
        self.answers: dict = dict(answers or {})

    @property
    def documents(self):
        return self.real.documents

    @property
    def settings(self):
        return self.real.settings

    def stream(self, question, history=None, doc_ids=None, k=None):
        answer = self.answers.get(" ".join(question.split()))
        if answer is None:
            yield from self.real.stream(question, history=history, doc_ids=doc_ids, k=k)
            return
        yield answer.text
        yield answer

    def ask(self, question, history=None, doc_ids=None, k=None):
        answer = self.answers.get(" ".join(question.split()))
        if answer is None:
            return self.real.ask(question, history=history, doc_ids=doc_ids, k=k)
        return answer


@contextlib.contextmanager
def app_in_process(assistant, examples: Sequence[str] = ()) -> Iterator[str]:
    """The chat app (build_app and the real launch, CSS and script) served from this process on
    a free 127.0.0.1 port; yields its address and closes it afterwards."""
    from peerqa.app import build_app
    from peerqa.serving import launch

    blocks = build_app(assistant, examples=list(examples))
    settings = assistant.settings.model_copy(update={"host": "127.0.0.1", "port": free_port()})
    url = launch(blocks, settings)
    try:
        yield url.rstrip("/")
    finally:
        blocks.close()


# -- hand-made answers built from real passages of the bundled corpus ----------------------------

PARTIAL_Q = "What salary band are peer support workers paid in NHS Scotland?"
MISSING = "The documents give no salary band or figure for peer support workers in NHS Scotland."
MARKDOWN_Q = "Does stigma affect how peer providers are first seen?"


def _passage_with(assistant, query: str, doc_id: str, phrase: str):
    """The retrieved passage of ``doc_id`` that holds ``phrase``, and the sentence holding it."""
    from peerqa.text import sentence_spans

    for p in assistant.search(query, k=10, doc_ids=[doc_id]):
        at = p.text.find(phrase)
        if at < 0:
            continue
        doc = next(d for d in assistant.documents if d.doc_id == doc_id)
        for a, b in sentence_spans(doc.text, p.start, p.end):
            if a <= p.start + at < b:
                return p, (a, b), doc.text[a:b]
    raise AssertionError(f"no passage of {doc_id} holds {phrase!r} for {query!r}")


def partial_answer(assistant):
    """A partial answer with a conflict, as the answers issue describes them: what is missing,
    then the nearest evidence, two sources differing on the number of paid posts."""
    from dataclasses import replace

    from peerqa import Answer, Citation
    from peerqa.types import Conflict, ConflictSide

    p80, s80, q80 = _passage_with(assistant, "paid peer support roles in mental health services "
                                  "across Scotland", "iriss-peer-support-roles", "around 80 paid")
    p37, s37, q37 = _passage_with(assistant, "peer workers in paid employment in Scotland",
                                  "hee-evidence-brief", "around 37 peer workers")
    c1 = Citation.of(replace(p80, relevance=0.82), 1, (s80,))
    c2 = Citation.of(replace(p37, relevance=0.47), 2, (s37,))
    text = f"{MISSING} What they say about paid posts: {q80} [1] {q37} [2]"
    conflict = Conflict(point="How many paid peer support posts there are in Scotland", sides=(
        ConflictSide(number=1, quote=q80, start=s80[0], end=s80[1], value="around 80",
                     as_of="2016"),
        ConflictSide(number=2, quote=q37, start=s37[0], end=s37[1], value="around 37",
                     as_of="2012"),
    ))
    return Answer(question=PARTIAL_Q, text=text, citations=[c1, c2], abstained=False,
                  coverage="partial", missing=MISSING, conflicts=[conflict])


def markdown_answer(assistant):
    """An answer citing an evidence-brief passage full of Markdown (a heading that is a link, an
    escaped asterisk inside emphasis), with a weak relevance and a page number."""
    from dataclasses import replace

    from peerqa import Answer, Citation

    p, span, sentence = _passage_with(assistant, "Does stigma towards mental illness affect "
                                      "initial perceptions of peer providers", "hee-evidence-brief",
                                      "The goal of this study was to measure reactions")
    c = Citation.of(replace(p, relevance=0.18, page=14), 1, (span,))
    return Answer(question=MARKDOWN_Q, text=f"{sentence} [1]", citations=[c], abstained=False)

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
