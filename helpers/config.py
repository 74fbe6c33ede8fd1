"""Load and validate ``config.yaml``.

Every chapter and every ``python -m helpers`` command reads one configuration file. Only
``paths.data_dir`` is required; every other section and key has the default shown in the
repository's ``config.yaml``. All problems of a file are reported together in one
:class:`ConfigError`, one line each, naming the file and line, the key, a short excerpt of
the bad value and how to fix it.

The YAML is read by :mod:`helpers.safe_yaml`, which also refuses what no configuration
needs and what could exhaust memory: duplicated keys, recursive aliases, deep nesting and
documents that expand (through aliases) to too many nodes, a "billion laughs".

Example
-------
>>> from helpers.config import load_config
>>> cfg = load_config()                      # doctest: +SKIP
>>> cfg.paths.results_dir.name               # doctest: +SKIP
'results'
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator

from .names import (
    ARCHIVE_MAX_BYTES,
    ARCHIVE_MAX_MEMBERS,
    LOSSES,
    MIN_PER_SUBJECT,
    Loss,
    Pooling,
    Precision,
)
from .safe_yaml import BadYAMLError, cut, excerpt, key_name, parse_yaml

CONFIG_ENV = "ANISOTROPY_BOOK_CONFIG"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"
MAX_CONFIG_BYTES = 1_000_000
BOOK_WINDOW = 512  # positions of the packaged all-MiniLM-L6-v2 and of the book's small BERT


class ConfigError(ValueError):
    """A configuration problem, with the file, key, value and fix in the message."""


# --- the schema --------------------------------------------------------------------------------------------


def _no_bool(value: Any) -> Any:
    if isinstance(value, bool):  # YAML turns yes/no/on/off into booleans; never a number here
        raise ValueError("must be a number, not true/false")
    return value


def _path_text(value: Any, optional: bool = False) -> Any:
    """Paths and model names: non-empty, no NUL byte, no component longer than a file name can be."""
    if value is None and optional:
        return None
    if value is None or (isinstance(value, str) and not value.strip()):
        raise ValueError("must be a non-empty path")
    if isinstance(value, str):
        if "\0" in value:
            raise ValueError("must not contain a NUL character")
        if any(len(os.fsencode(part)) > 255 for part in value.split("/")):
            raise ValueError("has a path component longer than 255 bytes")
    return value


Int = Annotated[int, BeforeValidator(_no_bool)]
Float = Annotated[float, BeforeValidator(_no_bool)]
# numpy and scikit-learn take seeds of 32 bits
Seed = Annotated[int, BeforeValidator(_no_bool), Field(ge=0, le=2**32 - 1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class Paths(_Strict):
    data_dir: Path
    results_dir: Path = Path("results")
    second_data_dir: Path | None = None

    @field_validator("data_dir", "results_dir", "second_data_dir", mode="before")
    @classmethod
    def _usable(cls, value: Any, info) -> Any:
        return _path_text(value, optional=info.field_name == "second_data_dir")


class DataSettings(_Strict):
    subjects: list[str] | None = None
    train_subjects: list[str] | None = Field(
        default_factory=lambda: ["physics", "biology", "history"]
    )
    max_per_subject: Int | None = Field(default=None, ge=MIN_PER_SUBJECT)
    second_max_per_subject: Int | None = Field(default=200, ge=MIN_PER_SUBJECT)
    test_fraction: Float = Field(default=0.3, gt=0.0, lt=1.0)
    seed: Seed = 13
    archive_max_bytes: Int = Field(default=ARCHIVE_MAX_BYTES, ge=1)
    archive_max_members: Int = Field(default=ARCHIVE_MAX_MEMBERS, ge=1)
    # The column naming each chunk's group within its subject (null: subtopic or group if present)
    group_field: str | None = Field(default=None, min_length=1)


class ModelSpec(_Strict):
    """One model role: a name (hub id, local folder, ``packaged:...`` or ``book:...``) and pooling."""

    name: str = Field(min_length=1)
    pooling: Pooling = "mean"

    @field_validator("name", mode="before")
    @classmethod
    def _usable_name(cls, value: Any) -> Any:
        return _path_text(value)


class Models(_Strict):
    baseline: ModelSpec = ModelSpec(name="book:small-bert")
    contrastive: ModelSpec = ModelSpec(name="packaged:all-MiniLM-L6-v2")
    finetune_base: ModelSpec = ModelSpec(name="packaged:all-MiniLM-L6-v2")


class Encoding(_Strict):
    batch_size: Int = Field(default=32, ge=1, le=4096)
    max_length: Int = Field(default=256, ge=8, le=8192)
    normalize: bool = True
    # fp32: the book's numbers; bf16: about 2.2x faster, cosine >= 0.999; int8: lossy
    precision: Precision = "fp32"


class Pretraining(_Strict):
    hidden_size: Int = Field(default=128, ge=16, le=4096)
    num_layers: Int = Field(default=2, ge=1, le=48)
    num_heads: Int = Field(default=2, ge=1, le=64)
    intermediate_size: Int = Field(default=512, ge=16, le=16384)
    tokenizer: Literal["corpus", "bert-base-uncased"] = "corpus"
    vocab_size: Int = Field(default=2000, ge=100, le=100_000)  # with tokenizer: corpus
    max_length: Int = Field(default=256, ge=16, le=512)
    short_length: Int = Field(default=64, ge=16, le=512)  # blocks of most steps
    long_fraction: Float = Field(default=0.1, ge=0, le=1)  # steps on max_length blocks
    batch_size: Int = Field(default=32, ge=2, le=4096)
    steps: Int = Field(default=3000, ge=1, le=10_000_000)
    learning_rate: Float = Field(default=2e-3, gt=0, le=1)
    warmup_steps: Int = Field(default=200, ge=0, le=10_000_000)
    weight_decay: Float = Field(default=0.01, ge=0, le=1)
    dropout: Float = Field(default=0.1, ge=0, lt=1)
    mask_probability: Float = Field(default=0.3, gt=0, lt=1)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 where the CPU has it
    track_every: Int = Field(default=250, ge=1, le=10_000_000)
    extra_text_dir: Path | None = None
    seed: Seed = 13

    @field_validator("extra_text_dir", mode="before")
    @classmethod
    def _usable(cls, value: Any) -> Any:
        return _path_text(value, optional=True)


class Finetuning(_Strict):
    """Contrastive fine-tuning (:mod:`helpers.finetuning`).

    With ``stop_at_plateau`` a run holds back ``validation_fraction`` of the training
    chunks, keeps the learning rate constant after warm-up, and stops when the validation
    silhouette gains less than ``plateau_delta`` over its last ``plateau_evaluations``
    evaluations, after ``max_minutes`` or after ``epochs`` epochs, whichever comes first.
    Without it the run trains exactly ``epochs`` epochs on every training chunk, with a
    linear decay. ``extra_seeds`` repeat the book's fine-tune (and the temperature runs)
    with other seeds, to show how much of a result is the seed.
    """

    losses: list[Loss] = Field(default_factory=lambda: list(LOSSES), min_length=1)
    epochs: Int = Field(default=12, ge=1, le=10_000)
    stop_at_plateau: bool = True
    plateau_delta: Float = Field(default=0.01, ge=0, le=2)
    plateau_evaluations: Int = Field(default=3, ge=1, le=1000)
    max_minutes: Float = Field(default=3.0, gt=0, le=10_000)
    validation_fraction: Float = Field(default=0.2, gt=0, lt=1)
    extra_seeds: list[Seed] = Field(default_factory=lambda: [14, 15], max_length=20)
    batch_size: Int = Field(default=32, ge=4, le=4096)  # a batch must hold several subjects
    learning_rate: Float = Field(default=5e-5, gt=0, le=1)
    max_length: Int = Field(default=96, ge=8, le=8192)
    triplet_margin: Float = Field(default=0.3, gt=0, le=2)
    scale: Float = Field(default=20.0, gt=0, le=1000)  # multiple_negatives: 1 / temperature
    eval_steps: Int = Field(default=3, ge=1, le=10_000_000)
    precision: Literal["auto", "bf16", "fp32"] = "auto"  # auto: bf16 autocast where the CPU has it
    seed: Seed = 13


class Continued(_Strict):
    """Training that starts from ``models.baseline`` (MLM + SimCSE, MLM + fine-tune).

    The rest of the recipe is ``finetuning``'s. The small BERT was pre-trained at a rate
    of 2e-3 and moves little at a sentence encoder's 5e-5; bert-base wants about 3e-5.
    """

    learning_rate: Float = Field(default=5e-4, gt=0, le=1)
    epochs: Int = Field(default=4, ge=1, le=10_000)


SECTIONS: dict[str, type[_Strict]] = {
    "paths": Paths,
    "data": DataSettings,
    "models": Models,
    "encoding": Encoding,
    "pretraining": Pretraining,
    "finetuning": Finetuning,
    "continued": Continued,
}


class Config(_Strict):
    """The validated configuration. Paths are absolute."""

    paths: Paths
    data: DataSettings = DataSettings()
    models: Models = Models()
    encoding: Encoding = Encoding()
    pretraining: Pretraining = Pretraining()
    finetuning: Finetuning = Finetuning()
    continued: Continued = Continued()
    source: Path = Field(default=Path("config.yaml"), exclude=True)

    def shown(self, path: Path) -> str:
        """``path`` as a reader would type it: relative to the repository when inside it."""
        for base in (REPO_ROOT, self.source.parent):
            try:
                return Path(path).resolve().relative_to(base).as_posix()
            except ValueError:
                continue
        return str(path)

    @property
    def models_dir(self) -> Path:
        return self.paths.results_dir / "models"

    @property
    def cache_dir(self) -> Path:
        return self.paths.results_dir / "cache"


# --- reading the file ---------------------------------------------------------------------------------------


def _read_yaml(source: Path) -> tuple[Any, dict[tuple, int]]:
    if source.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{source}: {source.stat().st_size:,} bytes is too big for a configuration "
            f"(at most {MAX_CONFIG_BYTES:,}). Point --config at the right file."
        )
    try:
        text = source.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text; save the file as UTF-8.") from None
    try:
        return parse_yaml(text)
    except BadYAMLError as exc:
        raise ConfigError(f"{source}: {exc}") from None


# --- collecting every problem --------------------------------------------------------------------------------


class _Problems:
    """Problems of one file, each reported as one line naming the file, line, key, value and fix."""

    def __init__(self, source: Path, lines: dict[tuple, int]) -> None:
        self.source, self.lines, self.items = source, lines, []

    def add(self, key: tuple, text: str) -> None:
        line = next((self.lines[key[:n]] for n in (2, 1) if key[:n] in self.lines), None)
        where = f"{self.source.name}, line {line}" if line else self.source.name
        self.items.append((line or 0, f"{where}: {text}"))

    def raise_if_any(self) -> None:
        if self.items:
            count = f"{len(self.items)} problems" if len(self.items) > 1 else "1 problem"
            in_file_order = sorted(self.items, key=lambda item: item[0])
            lines = [text for _, text in in_file_order]
            raise ConfigError(
                f"{self.source}: invalid configuration ({count}):\n  - " + "\n  - ".join(lines)
            )


def _default_of(loc: tuple) -> str | None:
    model: Any = SECTIONS.get(str(loc[0])) if loc else None
    for part in loc[1:]:
        field = (
            model.model_fields.get(part)
            if isinstance(model, type) and issubclass(model, BaseModel)
            else None
        )
        if field is None:
            return None
        if (
            isinstance(field.annotation, type)
            and issubclass(field.annotation, BaseModel)
            and part != loc[-1]
        ):
            model = field.annotation
            continue
        if field.is_required():
            return None
        default = field.get_default(call_default_factory=True)
        return None if isinstance(default, BaseModel) else _as_yaml(default)
    return None


def _as_yaml(value: Any) -> str:
    """A default as it would be written in config.yaml (null, true), briefly."""
    if value is None or isinstance(value, bool):
        return yaml.safe_dump(value).split("\n")[0]
    return excerpt(value)


def _add_validation_errors(problems: _Problems, section: str, exc: ValidationError) -> None:
    for err in exc.errors():
        loc = (section, *err["loc"])
        key = ".".join(key_name(p) for p in loc)
        value = excerpt(err.get("input"))
        if err["type"] == "extra_forbidden":
            fix = f"remove it or check its spelling; see config.yaml in the repository for the keys allowed under {section}"
            problems.add(loc, f"unknown key '{key}' (value {value}): {fix}")
        elif err["type"] == "missing":
            problems.add(
                loc,
                f"missing key '{key}': add it (see config.yaml in the repository for an example)",
            )
        else:
            default = _default_of(loc)
            msg = err["msg"].removeprefix("Value error, ")
            fix = f"Fix: use a valid value (default {default})." if default else "Fix the value."
            problems.add(loc, f"key '{key}' has bad value {value}: {msg}. {fix}")


def _validate_sections(raw: dict, problems: _Problems) -> tuple[dict[str, _Strict], set[tuple]]:
    """Validate each section; return the sections (bad keys replaced by defaults) and the bad keys.

    The stand-in defaults let the checks between keys still run on the keys that are valid.
    """
    for key, value in raw.items():
        if key not in SECTIONS:
            problems.add(
                (key,),
                f"unknown key '{key_name(key)}' (value {excerpt(value)}): remove it or "
                "check its spelling; see config.yaml in the repository for the keys allowed under the top level",
            )
    sections, bad = {}, set()
    for name, model in SECTIONS.items():
        value = {} if raw.get(name) is None else raw[name]
        try:
            sections[name] = model.model_validate(value)
        except ValidationError as exc:
            _add_validation_errors(problems, name, exc)
            failed = {err["loc"][0] for err in exc.errors() if err["loc"]}
            bad |= {(name, key) for key in failed} | (
                {(name,)} if any(not e["loc"] for e in exc.errors()) else set()
            )
            if isinstance(value, dict) and (name,) not in bad:
                try:
                    sections[name] = model.model_validate(
                        {k: v for k, v in value.items() if k not in failed}
                    )
                except ValidationError:
                    pass
    return sections, bad


def _dependent_problems(s: dict[str, _Strict], bad: set[tuple], problems: _Problems) -> None:
    """Ranges that depend on other keys, each checked only when the keys it reads are valid."""

    def valid(section: str, *keys: str) -> Any:
        ok = section in s and (section,) not in bad and not any((section, k) in bad for k in keys)
        return s[section] if ok else None

    if (
        pre := valid("pretraining", "hidden_size", "num_heads")
    ) and pre.hidden_size % pre.num_heads:
        problems.add(
            ("pretraining", "num_heads"),
            f"key 'pretraining.num_heads' = {pre.num_heads} does not divide pretraining.hidden_size = "
            f"{pre.hidden_size}; each attention head gets hidden_size / num_heads dimensions. "
            "Fix: e.g. num_heads 4 with hidden_size 256.",
        )
    if (
        pre := valid("pretraining", "short_length", "max_length")
    ) and pre.short_length > pre.max_length:
        problems.add(
            ("pretraining", "short_length"),
            f"key 'pretraining.short_length' = {pre.short_length} is longer than pretraining.max_length = "
            f"{pre.max_length}; the short blocks of most steps must not exceed the long ones. "
            f"Fix: use at most {pre.max_length}.",
        )
    if (pre := valid("pretraining", "warmup_steps", "steps")) and pre.warmup_steps > pre.steps:
        problems.add(
            ("pretraining", "warmup_steps"),
            f"key 'pretraining.warmup_steps' = {pre.warmup_steps} is more than pretraining.steps = "
            f"{pre.steps}. Fix: use at most {pre.steps} (about a tenth of the steps is usual).",
        )
    if (
        (data := valid("data", "train_subjects"))
        and data.train_subjects is not None
        and len(set(data.train_subjects)) == 1
    ):
        problems.add(
            ("data", "train_subjects"),
            f"key 'data.train_subjects' = {excerpt(data.train_subjects)}: fine-tuning needs at least two "
            "subjects to tell apart. Fix: list two or more, or null for every subject.",
        )
    if models := valid("models", "baseline", "contrastive", "finetune_base"):
        book = sorted(
            {
                spec.name
                for spec in (models.baseline, models.contrastive, models.finetune_base)
                if spec.name.startswith(("packaged:", "book:"))
            }
        )
        windows = [("encoding", "max_length", book)]
        if models.finetune_base.name.startswith(("packaged:", "book:")):
            windows.append(("finetuning", "max_length", [models.finetune_base.name]))
        for section, key, names in windows:
            if names and (values := valid(section, key)) and getattr(values, key) > BOOK_WINDOW:
                problems.add(
                    (section, key),
                    f"key '{section}.{key}' = {getattr(values, key)} is longer than the {BOOK_WINDOW} positions "
                    f"of {', '.join(names)}. Fix: use at most {BOOK_WINDOW}, or a model with a longer window.",
                )
    if data := valid("data", "subjects", "train_subjects"):
        _check_subject_lists(data, problems)


def _check_subject_lists(data: DataSettings, problems: _Problems) -> None:
    subjects, train = data.subjects, data.train_subjects
    for key, values in (("subjects", subjects), ("train_subjects", train)):
        if values is not None and (len(values) == 0 or len(set(values)) != len(values)):
            problems.add(
                ("data", key),
                f"key 'data.{key}' = {excerpt(values)} must be a non-empty list without repeats, or null.",
            )
    if subjects and train and not set(train) <= set(subjects):
        missing = sorted(set(train) - set(subjects))
        problems.add(
            ("data", "train_subjects"),
            f"key 'data.train_subjects' names {excerpt(missing)} which 'data.subjects' leaves out; "
            "add them to data.subjects or remove them from data.train_subjects.",
        )


def _shown_path(path: Path) -> str:
    return repr(cut(str(path), 80, keep_end=True))


_VARIABLE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def _expand(value: Path) -> Path:
    """``value`` with ``$VAR``, ``${VAR}`` and ``~`` expanded; a variable unset or empty is an error.

    An empty variable counts as missing: ``$EMPTY/results`` would silently become ``/results``.

    >>> _expand(Path("${HOME}/chunks")) == Path.home() / "chunks"
    True
    """

    def replace(match: re.Match) -> str:
        name = match.group(1) if match.group(1) is not None else match.group(2)
        if not os.environ.get(name):
            raise _UnsetVariableError(name)
        return os.environ[name]

    return Path(os.path.expanduser(_VARIABLE.sub(replace, str(value))))


class _UnsetVariableError(LookupError):
    """A path names an environment variable that is not set (or is empty)."""


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    value = _expand(value)
    return value if value.is_absolute() else (base / value).resolve()


def _check_writable(path: Path) -> str | None:
    """Why ``path`` cannot be a results folder, or ``None``; creates nothing that stays.

    A folder that does not exist yet is created by whatever writes there first, so ``check``
    and failed runs leave no empty results folder: its nearest existing parent is tested instead.
    """
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    if existing is None or not existing.is_dir():
        return f"{existing} is not a folder" if existing is not None else "no parent folder exists"
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".write-test-"):
            pass
    except OSError as exc:
        return (
            f"{exc.strerror or exc} in {existing}" if existing != path else exc.strerror or str(exc)
        )
    return None


PATH_KEYS = (
    ("paths", "data_dir"),
    ("paths", "results_dir"),
    ("paths", "second_data_dir"),
    ("pretraining", "extra_text_dir"),
)


def _resolve_paths(cfg: Config, check_data: bool, problems: _Problems) -> Config:
    base = cfg.source.parent
    resolved: dict[tuple[str, str], Path | None] = {}
    for section, key in PATH_KEYS:
        value = getattr(getattr(cfg, section), key)
        try:
            resolved[section, key] = _resolve(base, value)
        except _UnsetVariableError as exc:
            problems.add(
                (section, key),
                f"key '{section}.{key}' = {_shown_path(value)} uses the environment variable {exc.args[0]}, "
                "which is not set (or is empty). Set it, or write the path out.",
            )
            resolved[section, key] = None
        except (OSError, RuntimeError) as exc:  # e.g. a symlink loop
            problems.add(
                (section, key), f"key '{section}.{key}' cannot be resolved ({exc}). Fix the path."
            )
            resolved[section, key] = None
    if any(
        resolved[k] is None and getattr(getattr(cfg, k[0]), k[1]) is not None for k in PATH_KEYS
    ):
        return cfg  # the problems above end the load
    paths = cfg.paths.model_copy(
        update={
            key: resolved["paths", key] for key in ("data_dir", "results_dir", "second_data_dir")
        }
    )
    pre = cfg.pretraining.model_copy(
        update={"extra_text_dir": resolved["pretraining", "extra_text_dir"]}
    )
    if check_data:
        try:
            exists = paths.data_dir.exists()
        except OSError as exc:
            exists, reason = False, f" ({exc.strerror})"
        else:
            reason = ""
        if not exists:
            problems.add(
                ("paths", "data_dir"),
                f"key 'paths.data_dir' = {_shown_path(paths.data_dir)} does not exist{reason}. Point it at a folder of "
                "subject sub-folders, a JSONL/CSV/Parquet file or a .tar.gz/.zip archive.",
            )
        if (reason := _check_writable(paths.results_dir)) is not None:
            problems.add(
                ("paths", "results_dir"),
                f"key 'paths.results_dir' = {_shown_path(paths.results_dir)} cannot be created or written "
                f"({reason}). Point it at a folder you can write to.",
            )
    return cfg.model_copy(update={"paths": paths, "pretraining": pre})


# --- the entry points ----------------------------------------------------------------------------------------


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to use: ``explicit``, else ``$ANISOTROPY_BOOK_CONFIG``, else the repo's ``config.yaml``."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load_config(path: str | Path | None = None, *, check_data: bool = True) -> Config:
    """Read, validate and resolve a configuration file.

    Relative paths are resolved against the folder holding the file. With
    ``check_data`` the data folder must exist and the results folder must be writable.
    Every problem found is reported in one :class:`ConfigError`.

    >>> cfg = load_config("config.yaml")          # doctest: +SKIP
    >>> cfg.models.contrastive.name                 # doctest: +SKIP
    'packaged:all-MiniLM-L6-v2'
    """
    source = config_path(path)
    if not source.is_file():
        raise ConfigError(
            f"{source}: config file not found. Pass --config PATH, set {CONFIG_ENV}, "
            "or run from the repository root where config.yaml lives."
        )
    raw, lines = _read_yaml(source)
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping of sections ('paths' with its 'data_dir', optionally 'models' and others) "
            f"at the top level, got {type(raw).__name__}. See config.yaml in the repository for the layout."
        )
    problems = _Problems(source, lines)
    sections, bad = _validate_sections(raw, problems)
    _dependent_problems(sections, bad, problems)
    if "paths" not in sections:
        problems.raise_if_any()
    cfg = Config.model_validate({**sections, "source": source})
    cfg = _resolve_paths(cfg, check_data, problems)
    problems.raise_if_any()
    return cfg
