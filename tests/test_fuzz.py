"""Property-based fuzzing of ``python -m helpers check`` with hostile configs and corpora.

Whatever the input, ``check`` ends with exit code 0 (all fine) or 2 (one ``error: ...``
message), never a traceback, within a time and memory bound. Hypothesis generates:

* configs: structured YAML with wrong types, unknown keys, huge numbers and odd values;
  raw YAML with anchors and aliases ("billion laughs"), merges, recursion, deep nesting,
  duplicated keys, tags; random text and random bytes;
* corpora: subject folders with odd names and encodings, CSV/JSONL/JSON/Parquet tables
  with odd columns and cell types, tar (plain, gz, bz2, xz) and zip archives with odd
  members (links, devices, absolute and ``..`` paths, clashes, nesting, truncation);
* folders with symbolic links (out of the data folder, dangling, looping), refused with
  nothing outside read or printed; malformed data files (UTF-16, NULs, invisible text,
  huge files, repeated columns and keys, control characters in subjects, mixed layouts).

``models`` is always left out or kept to the packaged defaults: ``check`` only describes
model roles and must never train. Every path a config names stays in a temporary folder.

Two more families go past ``check``:

* hostile page content: chunk texts, subjects and model labels built from HTML, script,
  comment, Vega-expression, MathJax and control-character fragments (and any other text)
  go through the book's chart builders and tables; the chart HTML must keep exactly one
  inert JSON script that reads back to the spec, with no markup of the strings parsed;
* damaged caches: a cache file or shard truncated, garbage, empty, re-saved with other
  rows, replaced by a folder or a FIFO; the cache folder or a shard folder replaced by a
  file; a cache folder that cannot be written. ``metrics`` and ``embed`` (on a tiny model)
  must end with exit 0 (recomputed) or 2 (one line naming the path), never hang or print a
  traceback, and work again once the damage is removed.

Most examples run ``helpers.cli.main`` in this process (fast), under a soft address-space
ceiling of the current size + 2 GB; a few run the real command in a subprocess limited to
3 GB of address space, measuring its peak memory.

The normal test run uses a short budget (under a minute). For a longer run by hand::

    FUZZ_EXAMPLES=5000 .venv/bin/pytest tests/test_fuzz.py -x -q -p no:cacheprovider

(``FUZZ_EXAMPLES`` sets the examples per test; ``FUZZ_SEED`` fixes Hypothesis' seed. Add
``-k "hostile or damaged"`` for the page-content and cache families only.) For a run of a
given length that reports how many cases it generated::

    .venv/bin/python tests/fuzz_long.py --minutes 20
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import resource
import shutil
import tarfile
import tempfile
import time
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from checkrun import run_check
from hypothesis import HealthCheck, event, given, seed, settings
from hypothesis import strategies as st
from planted import outside_folder

import helpers.corpus as corpus_module
from helpers.cli import main
from helpers.names import CHUNK_FILE_MAX_BYTES

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "0"))
COUNT_FILE = os.environ.get("FUZZ_COUNT_FILE")  # set by tests/fuzz_long.py
SECONDS_PER_EXAMPLE = 60
MEMORY_HEADROOM = 2 << 30


def fuzz_settings(default_examples: int):
    """Short in the normal run; ``FUZZ_EXAMPLES`` for long runs by hand."""
    decorated = settings(
        max_examples=EXAMPLES or default_examples,
        deadline=None,  # time is asserted per example below, with a generous bound
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.large_base_example,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )
    if "FUZZ_SEED" in os.environ:
        return lambda f: seed(int(os.environ["FUZZ_SEED"]))(decorated(f))
    return decorated


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


class Scratch:
    """A fresh folder per example (Hypothesis reuses the fixture across examples); the previous one is removed."""

    def __init__(self, root: Path) -> None:
        self.root, self.n = root, 0

    def new(self) -> Path:
        shutil.rmtree(
            self.root / f"ex{self.n:05d}", ignore_errors=True
        )  # long runs would fill the disk
        self.n += 1
        folder = self.root / f"ex{self.n:05d}"
        folder.mkdir()
        return folder


@pytest.fixture(scope="module")
def scratch(workdir):
    return Scratch(workdir)


# --- running check -------------------------------------------------------------------------------------


def _vm_size() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmSize:"):
            return int(line.split()[1]) * 1024
    return 0


@contextlib.contextmanager
def memory_ceiling(headroom: int = MEMORY_HEADROOM):
    """Lower the soft address-space limit to the current size + ``headroom`` for the block."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    ceiling = _vm_size() + headroom
    if hard != resource.RLIM_INFINITY:
        ceiling = min(ceiling, hard)
    resource.setrlimit(resource.RLIMIT_AS, (ceiling, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def assert_check_behaves(config: Path, *, secret: str | None = None) -> tuple[int, str]:
    """Run ``check`` in-process: exit 0 or 2, one short error message, no traceback, in time.

    Nothing it prints holds a raw escape character, nor ``secret`` (text outside the data
    folder). Returns the exit code and stderr.
    """
    if COUNT_FILE:  # the long run counts the cases it generated
        with open(COUNT_FILE, "a") as fh:
            fh.write("1\n")
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), memory_ceiling():
        code = main(["--config", str(config), "check"])
    elapsed = time.perf_counter() - started
    stderr = err.getvalue()
    assert code in (0, 2), (code, stderr[-3000:])
    assert "Traceback" not in stderr, stderr[-3000:]
    assert elapsed < SECONDS_PER_EXAMPLE, f"check took {elapsed:.1f} s"
    if code == 2:
        assert (
            stderr.startswith("error: ")
            and sum(line.startswith("error: ") for line in stderr.splitlines()) == 1
        ), stderr[-3000:]
    assert len(stderr) < 20_000 and all(len(line) < 1500 for line in stderr.splitlines()), stderr[
        :3000
    ]
    printed = out.getvalue() + stderr
    assert "\x1b" not in printed, printed[-3000:]
    assert secret is None or secret not in printed, printed[-3000:]
    event(
        f"exit {code}" + (f": {_kind(stderr)}" if code else "")
    )  # shown by --hypothesis-show-statistics
    return code, stderr


def _kind(stderr: str) -> str:
    """The gist of an error message, without paths or values: for the statistics of a long run."""
    text = re.sub(r"(/[^\s:,'\"]+)+", "PATH", stderr.splitlines()[0].removeprefix("error: "))
    return " ".join(re.sub(r"'[^']*'|\d+", "_", text).split()[:7])


# --- configs ---------------------------------------------------------------------------------------------

SMALL_CORPUS = {
    subject: [
        f"{subject} chunk {i}: " + " ".join(words.split()[i:] + words.split()[:i]) for i in range(6)
    ]
    for subject, words in {
        "physics": "force mass energy momentum velocity field charge wave",
        "biology": "cell membrane protein enzyme gene allele mitosis tissue",
        "history": "empire treaty revolution monarch parliament colony trade war",
    }.items()
}


def write_small_corpus(folder: Path) -> Path:
    for subject, texts in SMALL_CORPUS.items():
        (folder / subject).mkdir(parents=True)
        for i, text in enumerate(texts):
            (folder / subject / f"{i}.txt").write_text(text, encoding="utf-8")
    return folder


huge_ints = st.sampled_from([2**31, 2**32, 2**63, 2**64 + 1, -(2**63) - 1, 10**30, 10**300])
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    huge_ints,
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20),
    st.sampled_from(
        [
            "",
            " ",
            "NA",
            "null",
            "~",
            "yes",
            "1e20",
            "0x10",
            "1_000",
            "12:30",
            "2024-02-30",
            "a" * 5000,
        ]
    ),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)

GOOD = {
    "data": {
        "subjects": [None, ["physics", "biology"], ["physics"], ["geology", "physics"]],
        "train_subjects": [None, ["physics", "biology"], ["history"]],
        "max_per_subject": [None, 2, 4, 5, 100],
        "second_max_per_subject": [None, 4, 200],
        "test_fraction": [0.01, 0.3, 0.5, 0.9, 0.99],
        "seed": [0, 13, 2**32 - 1],
        "archive_max_bytes": [1, 1000, 2_000_000_000],
        "archive_max_members": [1, 3, 200_000],
    },
    "encoding": {
        "batch_size": [1, 32],
        "max_length": [8, 256, 512, 513],
        "normalize": [True, False],
    },
    "pretraining": {
        "hidden_size": [16, 250, 256],
        "num_layers": [1, 4],
        "num_heads": [1, 3, 4],
        "intermediate_size": [16, 1024],
        "max_length": [16, 512],
        "batch_size": [2, 8],
        "steps": [1, 200],
        "learning_rate": [1e-9, 5e-4],
        "warmup_steps": [0, 20, 500],
        "mask_probability": [0.01, 0.15],
        "track_every": [1, 20],
        "seed": [0, 13],
    },
    "finetuning": {
        "losses": [["batch_all_triplet"], ["multiple_negatives", "batch_all_triplet"], []],
        "epochs": [1, 2],
        "batch_size": [4, 32],
        "learning_rate": [5e-5],
        "max_length": [8, 96, 600],
        "triplet_margin": [0.3, 2],
        "eval_steps": [1, 3],
        "seed": [0, 13],
    },
}
MODEL_CHOICES = [
    None,
    {},
    {"baseline": {"pooling": "cls"}},
    {"contrastive": {"pooling": "max"}},
    {"finetune_base": "x"},
    {"contrastive": {"name": "packaged:all-MiniLM-L6-v2", "pooling": "cls"}},
    7,
    [1, 2],
]


@st.composite
def structured_configs(draw, base: Path) -> dict:
    """A config dict: each section absent, good, or with random (wrong) values and unknown keys."""
    corpus = str(base / "corpus")
    valid = {"data_dir": corpus, "results_dir": str(base / "results")}
    paths = draw(
        st.sampled_from(
            [
                valid,
                valid,
                valid,
                valid,
                {"data_dir": corpus},
                {
                    "data_dir": corpus,
                    "results_dir": str(base / "results"),
                    "second_data_dir": corpus,
                },
                {
                    "data_dir": corpus,
                    "results_dir": str(base / "results"),
                    "second_data_dir": str(base / "missing"),
                },
                {"data_dir": str(base / "missing"), "results_dir": str(base / "results")},
                {"data_dir": "", "results_dir": str(base / "results")},
                {"results_dir": str(base / "results")},
                {"data_dir": corpus, "dat_dir": corpus},
                None,
                5,
                [corpus],
            ]
        )
    )
    config = {} if paths is None else {"paths": paths}
    for section, keys in GOOD.items():
        mode = draw(st.sampled_from(["absent", "absent", "good", "good", "good", "random", "null"]))
        if mode == "null":
            config[section] = None
        elif mode != "absent":
            body = {}
            for key, choices in keys.items():
                if draw(st.booleans()):
                    body[key] = draw(
                        st.sampled_from(choices)
                        if mode == "good"
                        else st.one_of(st.sampled_from(choices), values)
                    )
            if mode == "random" and draw(st.booleans()):
                body[draw(st.text(min_size=1, max_size=10))] = draw(values)
            config[section] = body
    if draw(st.booleans()):
        config[draw(st.text(min_size=1, max_size=10))] = draw(values)
    if (models := draw(st.sampled_from(MODEL_CHOICES))) is not None:
        config["models"] = models
    if "pretraining" in config and isinstance(config["pretraining"], dict) and draw(st.booleans()):
        config["pretraining"]["extra_text_dir"] = draw(
            st.sampled_from([None, corpus, str(base / "missing"), ""])
        )
    return config


def laughs(levels: int, width: int, key: str) -> str:
    lines = ['l0: &l0 ["lol"]']
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, levels + 1)]
    return "\n".join(lines) + f"\n{key}: *l{levels}\n"


@st.composite
def raw_yaml(draw, base: Path) -> bytes:
    """YAML text that stresses the reader: aliases, recursion, nesting, duplicates, tags, junk."""
    head = f"paths: {{data_dir: {json.dumps(str(base / 'corpus'))}, results_dir: {json.dumps(str(base / 'results'))}}}\n"
    kind = draw(
        st.sampled_from(
            [
                "laughs",
                "recursive",
                "merge",
                "nesting",
                "duplicate",
                "tags",
                "numbers",
                "text",
                "bytes",
            ]
        )
    )
    if kind == "laughs":
        key = draw(st.sampled_from(["unknown", "data", "models", "paths_extra"]))
        body = laughs(draw(st.integers(1, 12)), draw(st.integers(1, 12)), key)
        if key == "data":
            body = body.replace("\ndata: *", "\ndata:\n  subjects: *")
    elif kind == "recursive":
        body = draw(
            st.sampled_from(
                [
                    "x: &x [1, *x]\n",
                    "x: &x {a: *x}\n",
                    "data: &d {subjects: *d}\n",
                    "x: &x [[[*x]]]\n",
                    "x: &x {<<: *x}\n",
                ]
            )
        )
    elif kind == "merge":
        body = draw(
            st.sampled_from(
                [
                    "base: &b {seed: 1, test_fraction: 0.3}\ndata:\n  <<: *b\n  seed: 2\n",
                    "data:\n  <<: [*nope]\n",
                    "data: {<<: 5}\n",
                    "a: &a {x: 1}\nb: &b {<<: *a, y: *a}\ndata: {<<: [*a, *b]}\n",
                ]
            )
        )
    elif kind == "nesting":
        n = draw(st.integers(1, 3000))
        style = draw(st.sampled_from(["flow-list", "flow-map", "block"]))
        if style == "flow-list":
            body = "deep: " + "[" * n + "]" * n + "\n"
        elif style == "flow-map":
            body = "deep: " + "{a: " * n + "1" + "}" * n + "\n"
        else:
            n = min(n, 200)
            body = (
                "deep:\n"
                + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(n))
                + "  " * (n + 1)
                + "v\n"
            )
    elif kind == "duplicate":
        body = draw(
            st.sampled_from(
                [
                    "data:\n  seed: 1\n  seed: 2\n",
                    "data: {}\ndata: {}\n",
                    "paths: {}\n",
                    "data: {seed: 1, seed: 1}\n",
                    "? [a, b]\n: 1\n",
                    "? {a: 1}\n: 2\n",
                ]
            )
        )
    elif kind == "tags":
        body = draw(
            st.sampled_from(
                [
                    "x: !!python/object/apply:os.system ['echo hacked']\n",
                    "x: !!python/name:os.system\n",
                    "data: {seed: !!binary aGVsbG8=}\n",
                    "data: {seed: !!timestamp 2024-02-30}\n",
                    "data: {subjects: !!set {a, b}}\n",
                    "data: {test_fraction: !!float nan}\n",
                    "data: {subjects: !!omap [{a: 1}]}\n",
                    "x: !custom 1\n",
                    "data: {seed: !!int 0x_}\n",
                    "x: !!str\n",
                    "%YAML 1.2\n---\nx: 1\n",
                    "---\nx: 1\n---\ny: 2\n",
                ]
            )
        )
    elif kind == "numbers":
        digits = draw(st.integers(1, 20_000))
        body = draw(
            st.sampled_from(
                [
                    f"data: {{seed: 1{'0' * digits}}}\n",
                    f"x: 0b1{'0' * digits}\n",
                    f"data: {{test_fraction: 0.{'3' * digits}}}\n",
                    f"data: {{seed: 1e{digits}}}\n",
                    f"encoding: {{batch_size: 0x{'f' * min(digits, 5000)}}}\n",
                    f"data: {{seed: {'1:' * min(digits, 500)}0}}\n",
                ]
            )
        )
    elif kind == "text":
        body = draw(st.text(max_size=300))
    else:
        return draw(st.binary(max_size=300))
    keep_head = kind != "text" and draw(st.integers(0, 3)) > 0
    return ((head if keep_head else "") + body).encode("utf-8", "surrogatepass")


@fuzz_settings(100)
@given(data=st.data())
def test_check_survives_structured_configs(scratch, data):
    base = scratch.new()
    write_small_corpus(base / "corpus")
    config = data.draw(structured_configs(base))
    path = base / "config.yaml"
    path.write_text(
        yaml.safe_dump(config, allow_unicode=data.draw(st.booleans())), encoding="utf-8"
    )
    assert_check_behaves(path)


@fuzz_settings(100)
@given(data=st.data())
def test_check_survives_raw_yaml(scratch, data):
    base = scratch.new()
    write_small_corpus(base / "corpus")
    path = base / "config.yaml"
    path.write_bytes(data.draw(raw_yaml(base)))
    assert_check_behaves(path)


# --- corpora ------------------------------------------------------------------------------------------------

WORDS = [
    "force",
    "cell",
    "empire",
    "atom",
    "NA",
    "null",
    "None",
    "nan",
    "",
    " ",
    "\t",
    "é",
    "日本",
    "\u2028",
    "a,b",
    '"q"',
    "\n",
    "\r\n",
    "#",
    "\\",
    "'",
]
texts = st.one_of(st.lists(st.sampled_from(WORDS), max_size=10).map(" ".join), st.text(max_size=30))
# Names pandas, YAML or JSON readers like to turn into missing values, booleans or numbers.
MISSING_LIKE = ["NA", "None", "null", "nan", "N/A", "#N/A", "NULL", "", " ", "true", "1990", "1e3"]
OTHER_NAMES = ["physics", "biology", "history", ".hidden", "_private", "日本", "a b", "-"]
subject_names = st.one_of(
    st.sampled_from(MISSING_LIKE),
    st.sampled_from(OTHER_NAMES),
    st.text(
        alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="/\0"),
        min_size=1,
        max_size=12,
    ),
)
file_bytes = st.one_of(
    texts.map(lambda t: t.encode("utf-8")),
    texts.map(lambda t: t.encode("utf-16")),
    texts.map(lambda t: t.encode("latin-1", "replace")),
    st.binary(max_size=64),
)
cells = st.one_of(
    st.none(),
    texts,
    subject_names,
    st.integers(-(2**70), 2**70),
    st.floats(),
    st.booleans(),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=4), st.integers(), max_size=2),
    st.binary(max_size=8),
)
COLUMNS = ["text", "subject", "id", "Text", "extra", ""]


@st.composite
def subject_list(draw) -> list[str]:
    names = draw(
        st.lists(
            subject_names, min_size=2, max_size=4, unique_by=lambda n: _safe_name(n).strip().lower()
        )
    )
    return names[:1] if draw(st.integers(0, 9)) == 9 else names  # now and then a single subject


ODD_COUNT = st.sampled_from(
    [0, 0, 0, 1, 1, 2, 3]
)  # most corpora are valid, so that check goes all the way


@st.composite
def records(draw) -> list[dict]:
    """Records of a valid corpus (1-4 subjects, 4-8 chunks each), then 0-3 odd records or cells."""
    rows = []
    for s, subject in enumerate(draw(subject_list())):
        for i in range(draw(st.integers(4, 8))):
            rows.append(
                {"id": f"{s}-{i}", "text": f"chunk {s} {i} {draw(texts)}", "subject": subject}
            )
    for _ in range(draw(ODD_COUNT)):
        if draw(st.booleans()):
            rows.append(
                {
                    draw(st.sampled_from(COLUMNS)): draw(cells)
                    for _ in range(draw(st.integers(0, 4)))
                }
            )
        else:
            rows[draw(st.integers(0, len(rows) - 1))][draw(st.sampled_from(COLUMNS))] = draw(cells)
    return rows


def _plain(value):
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return value


def write_table(path: Path, rows: list[dict], style: int) -> None:
    suffix = path.suffix
    if suffix == ".jsonl":
        lines = [json.dumps({k: _plain(v) for k, v in r.items()}) for r in rows]
        if style == 1:
            lines.insert(len(lines) // 2, "{broken json")
        if style == 2:
            lines.append('["not", "an", "object"]')
        if style == 3:
            lines.insert(0, "[" * 100_000 + "]" * 100_000)
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    elif suffix == ".json":
        plain = [{k: _plain(v) for k, v in r.items()} for r in rows]
        shapes = [
            plain,
            {"text": [r.get("text") for r in plain], "subject": [r.get("subject") for r in plain]},
            {"x": 1},
            5,
        ]
        path.write_text(json.dumps(shapes[style]), encoding="utf-8")
    elif suffix == ".csv":
        frame = pd.DataFrame([{k: _plain(v) for k, v in r.items()} for r in rows])
        text = frame.to_csv(index=False)
        text = {
            1: '"unterminated,quote\n' + text,
            2: text.replace(",", ";"),
            3: "\ufeff" + text + "a,b,c,d,e,f,g\n",
        }.get(style, text)
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
    else:
        frame = pd.DataFrame(rows)
        try:
            frame.to_parquet(path)
        except Exception:  # noqa: BLE001 - mixed types pyarrow cannot store: store them as text
            frame.map(lambda v: None if v is None else str(v)).to_parquet(path)


def _safe_name(name: str) -> str:
    name = name.replace("/", "_").replace("\0", "_")
    return "_" if name in ("", ".", "..") else name


FILE_NAMES = [
    "{i}.txt",
    "{i}.md",
    "{i}.TXT",
    ".{i}.txt",
    "{i}.rst",
    "sub/{i}.txt",
    "caf\udce9{i}.txt",
]  # last: not UTF-8


@st.composite
def corpus_trees(draw, root: Path) -> Path:
    """A data folder: subject sub-folders of chunk files, or tables, or a mix; valid, then 0-3 odd changes."""
    root.mkdir(parents=True, exist_ok=True)
    kind = draw(st.sampled_from(["table", "folders", "tables", "folders", "mixed"]))
    if kind in ("folders", "mixed"):
        folders = []
        for subject in draw(subject_list()):
            folders.append(root / _safe_name(subject))
            folders[-1].mkdir(exist_ok=True)
            for i in range(draw(st.integers(4, 8))):
                (folders[-1] / f"{i}.txt").write_bytes(
                    f"{subject} chunk {i} {draw(texts)}".encode()
                )
        for _ in range(draw(ODD_COUNT)):
            folder = draw(st.sampled_from(folders))
            name = folder / draw(st.sampled_from(FILE_NAMES)).format(i=draw(st.integers(0, 9)))
            name.parent.mkdir(exist_ok=True)
            other = draw(st.sampled_from(sorted(f for f in root.rglob("*.txt") if f.is_file())))
            name.write_bytes(
                draw(st.one_of(file_bytes, st.just(other.read_bytes())))
            )  # junk, or a copy
    if kind in ("table", "tables", "mixed"):
        for n in range(1 if kind == "table" else draw(st.integers(1, 3))):
            suffix = draw(st.sampled_from([".jsonl", ".json", ".csv", ".parquet"]))
            write_table(
                root / f"t{n}{suffix}",
                draw(records()),
                draw(st.sampled_from([0, 0, 0, 0, 1, 2, 3])),
            )
    return root


ODD_TAR = [
    "symlink",
    "hardlink",
    "fifo",
    "chr",
    "absolute",
    "parent",
    "dot",
    "clash",
    "long",
    "nonutf8",
    "dup",
    "big",
]
ODD_ZIP = [
    "symlink",
    "fifo",
    "absolute",
    "parent",
    "backslash",
    "drive",
    "dot",
    "clash",
    "long",
    "encrypted",
    "dup",
    "big",
]


def _tar_odd(tf: tarfile.TarFile, odd: str) -> None:
    info = tarfile.TarInfo(
        {
            "absolute": "/tmp/evil.txt",
            "parent": "chunks/../../evil.txt",
            "dot": "./chunks/./x.txt",
            "clash": "chunks/physics/0.txt/inner.txt",
            "long": "chunks/" + "x" * 300 + ".txt",
            "nonutf8": "chunks/physics/caf\udce9.txt",
            "dup": "chunks/physics/0.txt",
            "big": "chunks/physics/big.txt",
        }.get(odd, "chunks/physics/odd.txt")
    )
    data = b"odd member"
    if odd == "big":
        data = b"word " * 50_000
    if odd == "symlink":
        info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
    elif odd == "hardlink":
        info.type, info.linkname = tarfile.LNKTYPE, "chunks/physics/0.txt"
    elif odd in ("fifo", "chr"):
        info.type = tarfile.FIFOTYPE if odd == "fifo" else tarfile.CHRTYPE
    if info.isreg():
        info.size = len(data)
        tf.addfile(info, io.BytesIO(data))
    else:
        tf.addfile(info)


def _zip_odd(zf: zipfile.ZipFile, odd: str) -> None:
    name = {
        "absolute": "/tmp/evil.txt",
        "parent": "chunks/../../evil.txt",
        "backslash": "chunks\\..\\..\\evil.txt",
        "drive": "C:/evil.txt",
        "dot": "./chunks/./x.txt",
        "clash": "chunks/physics/0.txt/inner.txt",
        "long": "chunks/" + "x" * 300 + ".txt",
        "dup": "chunks/physics/0.txt",
        "big": "chunks/physics/big.txt",
    }.get(odd, "chunks/physics/odd.txt")
    info = zipfile.ZipInfo(name)
    if odd == "symlink":
        info.external_attr = 0o120777 << 16
    if odd == "fifo":
        info.external_attr = 0o010644 << 16
    if odd == "encrypted":
        info.flag_bits |= 0x1
    zf.writestr(info, b"word " * 50_000 if odd == "big" else b"odd member")


@st.composite
def archives(draw, base: Path) -> Path:
    """A tar or zip of a generated tree, maybe with odd members, nested, truncated or junk."""
    tree = draw(corpus_trees(base / "tree"))
    kind = draw(st.sampled_from(["tar", "tar.gz", "tar.bz2", "tar.xz", "tgz", "zip"]))
    path = base / "data" / f"corpus.{kind}"
    path.parent.mkdir()
    odd = draw(
        st.lists(st.sampled_from(ODD_ZIP if kind == "zip" else ODD_TAR), max_size=draw(ODD_COUNT))
    )
    if kind == "zip":
        with zipfile.ZipFile(
            path, "w", compression=draw(st.sampled_from([zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED]))
        ) as zf:
            for f in sorted(
                tree.rglob("*")
            ):  # a name that is not UTF-8 is stored as raw bytes (read back as cp437)
                name = (
                    ("chunks/" + f.relative_to(tree).as_posix())
                    .encode("utf-8", "surrogateescape")
                    .decode("cp437")
                )
                zf.write(f, name)
            for o in odd:
                with warnings.catch_warnings():  # duplicate names are the point
                    warnings.simplefilter("ignore")
                    _zip_odd(zf, o)
    else:
        mode = {"tar": "w", "tgz": "w:gz"}.get(kind, "w:" + kind.split(".")[-1])
        with tarfile.open(path, mode) as tf:
            tf.add(tree, arcname="chunks")
            for o in odd:
                with contextlib.suppress(
                    UnicodeEncodeError
                ):  # a format that cannot store a non-UTF-8 name
                    _tar_odd(tf, o)
    # Hypothesis favours small draws (0, False): the benign choice is the small one.
    if draw(st.integers(0, 5)) == 5:  # nested: an archive in a folder in an archive
        outer = base / "data" / "outer.zip"
        with zipfile.ZipFile(outer, "w") as zf:
            zf.write(path, f"wrap/{path.name}")
        path.unlink()
        path = outer
    damage = draw(st.integers(0, 11))
    if damage == 10:  # truncated (where, as a share: archive sizes vary with timestamps)
        raw = path.read_bytes()
        path.write_bytes(raw[: len(raw) * draw(st.integers(1, 999)) // 1000])
    elif damage == 11:
        path.write_bytes(draw(st.binary(max_size=200)))
    return path


def corpus_config(base: Path, data_dir: Path, data) -> Path:
    settings_ = {
        "train_subjects": data.draw(st.sampled_from([None, ["physics", "biology"]])),
        "test_fraction": data.draw(st.sampled_from([0.3, 0.3, 0.3, 0.01, 0.5, 0.9])),
        "max_per_subject": data.draw(st.sampled_from([None, 4, 6])),
        "seed": data.draw(st.integers(0, 2**32 - 1)),
        "archive_max_bytes": data.draw(st.sampled_from([2_000_000_000] * 4 + [10_000, 100])),
        "archive_max_members": data.draw(st.sampled_from([200_000] * 4 + [10, 2])),
    }
    path = base / "config.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "paths": {"data_dir": str(data_dir), "results_dir": str(base / "results")},
                "data": settings_,
            }
        ),
        encoding="utf-8",
    )
    return path


@fuzz_settings(80)
@given(data=st.data())
def test_check_survives_odd_corpora(scratch, data):
    base = scratch.new()
    tree = data.draw(corpus_trees(base / "corpus"))
    tables = sorted(tree.glob("t*.*"))
    data_dir = data.draw(st.sampled_from(tables + [tree])) if tables else tree
    assert_check_behaves(corpus_config(base, data_dir, data))


@fuzz_settings(60)
@given(data=st.data())
def test_check_survives_odd_archives(scratch, data):
    base = scratch.new()
    archive = data.draw(archives(base))
    system_tmp = base / "system-tmp"  # where extraction goes when no scratch folder is passed
    system_tmp.mkdir()
    saved, tempfile.tempdir = tempfile.tempdir, str(system_tmp)
    try:
        assert_check_behaves(corpus_config(base, archive, data))
    finally:
        tempfile.tempdir = saved
    leftovers = [p for folder in (base / "results", system_tmp) for p in folder.glob(".extract-*")]
    assert leftovers == [], leftovers


# --- folders with links -----------------------------------------------------------------------------------

SECRET = "OUTSIDE-SECRET-7f3a"  # text outside the data folder: must never be read or printed
LINK_KINDS = [
    "file in a subject",
    "subject folder",
    "folder in a subject",
    "table beside",
    "dangling",
    "loop",
    "to the data folder",
    "to a chunk inside",
    "in a skipped folder",  # never walked: not refused, and nothing read
]


def _outside(base: Path) -> Path:
    outside = outside_folder(base, SECRET)
    (outside / "t.jsonl").write_text(json.dumps({"text": SECRET, "subject": "x"}) + "\n")
    return outside


@st.composite
def linked_corpora(draw, base: Path) -> tuple[Path, bool]:
    """A valid subject-folder corpus with 1-3 symbolic links, and whether one must be refused."""
    root, outside = write_small_corpus(base / "corpus"), _outside(base)
    refused = False
    for n, kind in enumerate(draw(st.lists(st.sampled_from(LINK_KINDS), min_size=1, max_size=3))):
        subject = root / draw(st.sampled_from(sorted(SMALL_CORPUS)))
        link, target = {
            "file in a subject": (subject / f"l{n}.txt", outside / "secret.md"),
            "subject folder": (root / f"linked{n}", outside / "folder"),
            "folder in a subject": (subject / f"more{n}", outside / "folder"),
            "table beside": (root / f"t{n}.jsonl", outside / "t.jsonl"),
            "dangling": (subject / f"gone{n}.txt", outside / "missing.txt"),
            "loop": (subject / f"loop{n}", subject / f"loop{n}"),
            "to the data folder": (subject / f"up{n}", root),
            "to a chunk inside": (subject / f"same{n}.md", root / "physics" / "0.txt"),
            "in a skipped folder": (root / "_skipped" / f"l{n}.txt", outside / "secret.md"),
        }[kind]
        link.parent.mkdir(exist_ok=True)
        link.symlink_to(target)
        refused |= kind != "in a skipped folder"
    return root, refused


@fuzz_settings(15)
@given(data=st.data())
def test_check_refuses_links_and_reads_nothing_outside(scratch, data):
    base = scratch.new()
    root, refused = data.draw(linked_corpora(base))
    code, stderr = assert_check_behaves(corpus_config(base, root, data), secret=SECRET)
    if refused:
        assert code == 2 and "is a symbolic link" in stderr, stderr[-3000:]


# --- malformed data files ------------------------------------------------------------------------------------

#: Changes to a valid subject-folder corpus, each of which must be refused.
REFUSED_CHANGES = {
    "utf-16 le": lambda f: f.write_bytes("UTF-16 without a mark".encode("utf-16-le")),
    "utf-16 be": lambda f: f.write_bytes("UTF-16 without a mark".encode("utf-16-be")),
    "utf-16 bom": lambda f: f.write_bytes("UTF-16 with a mark, é".encode("utf-16")),
    "nul bytes": lambda f: f.write_bytes(b"text with a \0 in it"),
    "zero-width only": lambda f: f.write_text(
        "\u200b\u200c \ufeff\u2060\n\u200d", encoding="utf-8"
    ),
    "nul only": lambda f: f.write_bytes(b"\0\0\0"),
    "huge": lambda f: _sparse(f, CHUNK_FILE_MAX_BYTES + 1),
}
#: Changes to the data folder: (refused?, change).
FOLDER_CHANGES = {
    "table of chunks beside": (
        True,
        lambda root: write_table(root / "extra.jsonl", [{"text": "t", "subject": "physics"}], 0),
    ),
    "archive beside": (True, lambda root: _zip_of(root / "physics", root / "more.zip")),
    "escape in a subject": (True, lambda root: (root / "physics").rename(root / "phy\x1b[31msics")),
    "bidi override in a subject": (
        True,
        lambda root: (root / "history").rename(root / "his\u202etory"),
    ),
    "invisible subject": (True, lambda root: (root / "history").rename(root / "\u200b\u200d")),
    "manifest beside": (
        False,
        lambda root: (root / "manifest.csv").write_text("file,subject\nphysics/0.txt,physics\n"),
    ),
    "skipped folder": (False, lambda root: write_small_corpus(root / "_drafts")),
    "fifo chunk": (
        False,
        lambda root: os.mkfifo(root / "physics" / "pipe.txt"),
    ),  # skipped, never opened
    "folder named like a chunk": (False, lambda root: (root / "biology" / "d.txt").mkdir()),
    "empty folder": (False, lambda root: (root / "empty").mkdir()),
}
#: Table files holding a valid corpus, then one change each; all must be refused.
TABLE_CHANGES = {
    "csv in utf-16": lambda rows: (
        "c.csv",
        pd.DataFrame(rows).to_csv(index=False).encode("utf-16"),
    ),
    "csv with two text columns": lambda rows: (
        "c.csv",
        (
            "text,subject,text\n" + "".join(f"{r['text']},{r['subject']},more\n" for r in rows)
        ).encode(),
    ),
    "jsonl with a key twice": lambda rows: (
        "c.jsonl",
        "".join(json.dumps(r)[:-1] + ', "subject": "x"}\n' for r in rows).encode(),
    ),
    "zero-width text": lambda rows: (
        "c.jsonl",
        _jsonl([*rows, {"text": "\u200b\ufeff", "subject": "physics"}]),
    ),
    "nul in a text": lambda rows: (
        "c.jsonl",
        _jsonl([*rows, {"text": "a\0b", "subject": "physics"}]),
    ),
    "escape in a subject": lambda rows: (
        "c.jsonl",
        _jsonl([*rows, {"text": "t", "subject": "\x1b[2Jx"}]),
    ),
}


def _sparse(path: Path, size: int) -> None:
    """A file of ``size`` zero bytes that takes no disk space."""
    with open(path, "wb") as fh:
        fh.truncate(size)


def _zip_of(folder: Path, dest: Path) -> None:
    with zipfile.ZipFile(dest, "w") as zf:
        for f in sorted(folder.iterdir()):
            if f.is_file():  # not a FIFO made by "fifo chunk": opening it would wait forever
                zf.write(f, f"chunks/{folder.name}/{f.name}")


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


@st.composite
def malformed_corpora(draw, base: Path) -> tuple[Path, bool]:
    """A valid corpus (subject folders or one table) with 1-3 changes, and whether it must be refused."""
    root = write_small_corpus(base / "corpus")
    if draw(st.booleans()):
        rows = [{"text": t, "subject": s} for s, ts in SMALL_CORPUS.items() for t in ts]
        name, raw = TABLE_CHANGES[draw(st.sampled_from(sorted(TABLE_CHANGES)))](rows)
        (base / name).write_bytes(raw)
        return base / name, True
    refused = False
    for change in draw(
        st.lists(
            st.sampled_from(sorted(REFUSED_CHANGES) + sorted(FOLDER_CHANGES)),
            min_size=1,
            max_size=3,
            unique=True,
        )
    ):
        if change in REFUSED_CHANGES:
            subject = draw(
                st.sampled_from(
                    sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("_"))
                )
            )
            REFUSED_CHANGES[change](subject / f"{change.replace(' ', '-')}.txt")
            refused = True
        else:
            must, apply = FOLDER_CHANGES[change]
            with contextlib.suppress(FileNotFoundError):  # a subject renamed by an earlier change
                apply(root)
                refused |= must
    return root, refused


@fuzz_settings(25)
@given(data=st.data())
def test_check_refuses_malformed_data_files(scratch, data):
    base = scratch.new()
    path, refused = data.draw(malformed_corpora(base))
    code, stderr = assert_check_behaves(corpus_config(base, path, data))
    if refused:
        assert code == 2, stderr[-3000:]


# --- a few real processes ----------------------------------------------------------------------------------------


def _zip_bomb(path: Path) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for subject in ("physics", "history"):
            for i in range(4):
                zf.writestr(f"chunks/{subject}/{i}.txt", SMALL_CORPUS.get(subject, ["x"] * 6)[i])
        # Not a chunk file (.txt would meet the smaller per-chunk limit first): the archive budget's test.
        zf.writestr("chunks/physics/bomb.dat", b"\0" * 300_000_000)
    return path


WIRED = hasattr(
    corpus_module, "corpus_splits"
)  # check passes data.archive_* and results_dir to load_corpus


@pytest.mark.parametrize(
    "case",
    [
        "deep",
        pytest.param(
            "bomb",
            marks=pytest.mark.skipif(
                not WIRED,
                reason="helpers.corpus.corpus_splits does not yet pass data.archive_max_bytes to load_corpus",
            ),
        ),
        "ok",
    ],
)
def test_real_check_process_stays_small(tmp_path, case):
    config = tmp_path / "config.yaml"
    corpus = write_small_corpus(tmp_path / "corpus")
    head = f"paths: {{data_dir: {json.dumps(str(corpus))}, results_dir: {json.dumps(str(tmp_path / 'results'))}}}\n"
    if case == "deep":
        config.write_text(head + "deep: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
    elif case == "bomb":
        bomb = _zip_bomb(tmp_path / "bomb.zip")
        assert bomb.stat().st_size < 1_000_000
        config.write_text(
            head.replace(json.dumps(str(corpus)), json.dumps(str(bomb)))
            + "data: {archive_max_bytes: 100000000, train_subjects: null}\n",
            encoding="utf-8",
        )
    else:
        config.write_text(head + "data: {train_subjects: null}\n", encoding="utf-8")
    run = run_check(config, timeout=120)
    assert run.returncode == (0 if case == "ok" else 2), run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    assert run.seconds < SECONDS_PER_EXAMPLE, run.seconds
    assert run.peak_rss is not None and run.peak_rss < 1.5e9, run.peak_rss
    if case == "bomb":
        assert "archive_max_bytes" in run.stderr
        assert not list((tmp_path / "results").glob(".extract-*"))


# --- hostile page content --------------------------------------------------------------------------------

HOSTILE_FRAGMENTS = [
    "<!--",
    "-->",
    "<script>",
    "</script>",
    '"}]</script><script>window.__pwned=1</script>',
    "<img src=x onerror=alert(1)>",
    "<svg onload=alert(1)>",
    "\u2028",
    "\u2029",
    "'",
    '"',
    "\\",
    "`",
    "${x}",
    "{{x}}",
    r"\(\href{javascript:alert(1)}{x}\)",
    "$x$",
    "|",
    "&amp;",
    "\x1b[31m",
    "\x00",
    "\ufffe",
    "datum.x",
    "' + alert(1) + '",
]
# Any text pandas can hold (Arrow strings refuse lone surrogates), built mostly of the fragments.
hostile_texts = st.one_of(
    st.lists(st.sampled_from(HOSTILE_FRAGMENTS + ["word", " "]), min_size=1, max_size=6).map(
        "".join
    ),
    st.text(alphabet=st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20),
)


@fuzz_settings(6)
@given(
    texts=st.lists(hostile_texts, min_size=3, max_size=6, unique=True),
    models=st.lists(hostile_texts, min_size=1, max_size=2, unique=True),
    which=st.sampled_from(["explorer", "projections", "side views", "metric bars"]),
)
def test_hostile_text_stays_text_in_charts_and_tables(texts, models, which):
    """Whatever chunks, subjects and model labels hold, the chart HTML has one inert JSON script."""
    from test_page_safety import Markup, assert_inert, hostile_charts

    from helpers.analysis import METRIC_TITLES, metrics_table
    from helpers.charts import chart_html

    spec = hostile_charts(texts, models)[which].to_dict()
    assert_inert(chart_html(spec), spec)
    rows = [{"model": m, **dict.fromkeys(METRIC_TITLES, 0.5)} for m in texts + models]
    table = Markup(metrics_table(rows)._repr_html_())
    assert table.scripts == [] and not any(a.startswith("on") for a in table.attributes())


# --- damaged caches ---------------------------------------------------------------------------------------

# Damage the command must survive by recomputing (exit 0, a warning), and damage it must
# refuse in one line naming the path (exit 2). Never a hang, never a traceback.
RECOMPUTED = ["truncated", "garbage", "empty", "rolled", "other-texts", "stale-tmp"]
REFUSED = ["folder", "fifo", "cache-is-file", "shards-is-file", "unwritable"]


@pytest.fixture(scope="module")
def fuzz_model(workdir):
    from tinymodel import tiny_model

    return tiny_model(workdir / "tiny-model")


def _plant_damage(kind: str, target: Path, cache: Path, monkeypatch) -> Path:
    """Put damage ``kind`` at ``target`` (a cache file or shard); return the path it concerns."""
    from helpers.storage import load_arrays, save_arrays

    if kind == "cache-is-file":
        shutil.rmtree(cache, ignore_errors=True)
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text("in the way")
        return cache
    if kind == "unwritable":
        real = tempfile.mkstemp

        def refuse(*args, dir=None, **kwargs):
            if dir is not None and Path(dir).resolve() == cache.resolve():
                raise PermissionError(13, "Permission denied", str(dir))
            return real(*args, dir=dir, **kwargs)

        monkeypatch.setattr(tempfile, "mkstemp", refuse)
        return cache
    target.parent.mkdir(parents=True, exist_ok=True)
    if kind == "shards-is-file":
        shards = (
            target.parent if target.parent.suffix == ".shards" else target.with_suffix(".shards")
        )
        shutil.rmtree(shards, ignore_errors=True)
        shards.write_text("in the way")
        return shards
    if kind == "folder":
        shutil.rmtree(target, ignore_errors=True) if target.is_dir() else target.unlink(
            missing_ok=True
        )
        target.mkdir()
        return target
    if kind == "fifo":
        target.unlink(missing_ok=True)
        os.mkfifo(target)
        return target
    if kind == "stale-tmp":
        (target.parent / f".{target.name}.00000000-1.x.tmp").write_bytes(b"half")
        return target
    if kind in ("rolled", "other-texts") and target.is_file():
        vectors = load_arrays(target)["vectors"]
        if kind == "rolled":
            save_arrays(target, vectors=np.roll(vectors, 1, axis=0))  # a valid checksum
        else:
            save_arrays(target, vectors=vectors, texts_sha256=np.array("0" * 64))
        return target
    raw = target.read_bytes() if target.is_file() else b"PK\x03\x04" + b"x" * 500
    target.write_bytes(
        {"truncated": raw[: len(raw) // 2], "garbage": os.urandom(300), "empty": b""}.get(kind, raw)
    )
    return target


def _cache_targets(config: Path, model: Path, shard_size: int) -> dict[str, Path]:
    from helpers.config import load_config
    from helpers.corpus import corpus_splits
    from helpers.embeddings import cache_path
    from helpers.encoders import load_encoder

    cfg = load_config(config)
    enc = load_encoder(
        str(model), normalize=cfg.encoding.normalize, max_length=cfg.encoding.max_length
    )
    texts = list(corpus_splits(cfg)["train"]["text"])
    final = cache_path(cfg.cache_dir, "sentences", enc, texts)
    shard = final.with_suffix(".shards") / f"{0:09d}-{min(shard_size, len(texts)):09d}.npz"
    return {"cache": cfg.cache_dir, "final": final, "shard": shard}


class Hung(Exception):
    """A command that ran out of time (not an OSError, which a reader could take for a bad file)."""


def _run_cli(config: Path, args: list[str]) -> tuple[int, str]:
    import signal

    from helpers.cli import main as cli_main

    def alarm(signum, frame):
        raise Hung("the command hung")

    err = io.StringIO()
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(SECONDS_PER_EXAMPLE)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
            code = cli_main(["--config", str(config), *args])
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    return code, err.getvalue()


@fuzz_settings(8)
@given(data=st.data())
def test_damaged_caches_recompute_or_fail_in_one_line(scratch, fuzz_model, data):
    """Any damage to a cache file, a shard or the cache folder: exit 0 (recomputed) or 2 (one
    line naming the path), then a clean rerun once the damage is removed."""
    from conftest import write_config

    base = scratch.new()
    config = write_config(base)
    command = data.draw(st.sampled_from(["metrics", "embed"]))
    shard_size = data.draw(st.sampled_from([2, 4, 1000]))
    args = [command, "--model", str(fuzz_model)]
    args += ["--shard-size", str(shard_size)] if command == "embed" else []
    targets = _cache_targets(config, fuzz_model, shard_size)
    if data.draw(st.booleans()):  # damage a cache that exists, or one that does not yet
        assert _run_cli(config, args)[0] == 0
    where = data.draw(st.sampled_from(["final", "shard"] if command == "embed" else ["final"]))
    kind = data.draw(st.sampled_from(RECOMPUTED + REFUSED))
    with pytest.MonkeyPatch.context() as monkeypatch:
        culprit = _plant_damage(kind, targets[where], targets["cache"], monkeypatch)
        code, stderr = _run_cli(config, args)
    event(f"{kind}@{where}: exit {code}")
    assert "Traceback" not in stderr, stderr[-3000:]
    assert code in (0, 2), stderr[-3000:]
    if code == 2:
        lines = [line for line in stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), stderr[-3000:]
        assert str(culprit) in lines[0] and "recomputing" not in stderr, lines[0]
        assert kind in REFUSED, (kind, lines[0])
        # once the damage is gone, the command works again
        if culprit.is_dir() and not culprit.is_symlink() and culprit != targets["cache"]:
            shutil.rmtree(culprit)
        elif culprit.exists() and not culprit.is_dir():
            culprit.unlink()
        code, stderr = _run_cli(config, args)
        assert code == 0, stderr[-3000:]
