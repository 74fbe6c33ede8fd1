"""Load and validate ``config.yaml``.

Every chapter and every ``python -m helpers`` command reads one configuration file.
Problems are reported as a single :class:`ConfigError` naming the file, the key, the bad
value and how to fix it.

Example
-------
>>> from helpers.config import load_config
>>> cfg = load_config()                      # doctest: +SKIP
>>> cfg.paths.results_dir.name               # doctest: +SKIP
'results'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

CONFIG_ENV = "ANISOTROPY_BOOK_CONFIG"
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"


class ConfigError(ValueError):
    """A configuration problem, with the file, key, value and fix in the message."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Paths(_Strict):
    data_dir: Path
    results_dir: Path
    second_data_dir: Path | None = None

    @field_validator("data_dir", "results_dir", mode="before")
    @classmethod
    def _not_empty(cls, value: Any) -> Any:
        if value is None or (isinstance(value, str) and not value.strip()):
            raise ValueError("must be a non-empty path")
        return value


class DataSettings(_Strict):
    subjects: list[str] | None = None
    train_subjects: list[str] | None = None
    max_per_subject: int | None = Field(default=None, ge=2)
    second_max_per_subject: int | None = Field(default=200, ge=2)
    test_fraction: float = Field(default=0.3, gt=0.0, lt=1.0)
    seed: int = 13


class ModelSpec(_Strict):
    """One model role: a name (hub id, local folder, ``packaged:...`` or ``book:...``) and pooling."""

    name: str = Field(min_length=1)
    pooling: Literal["mean", "cls"] = "mean"


class Models(_Strict):
    baseline: ModelSpec
    contrastive: ModelSpec
    finetune_base: ModelSpec


class Encoding(_Strict):
    batch_size: int = Field(default=32, ge=1)
    max_length: int = Field(default=256, ge=8, le=8192)
    normalize: bool = True


class Pretraining(_Strict):
    hidden_size: int = Field(default=256, ge=16)
    num_layers: int = Field(default=4, ge=1)
    num_heads: int = Field(default=4, ge=1)
    intermediate_size: int = Field(default=1024, ge=16)
    max_length: int = Field(default=256, ge=16, le=512)
    batch_size: int = Field(default=8, ge=2)
    steps: int = Field(default=200, ge=1)
    learning_rate: float = Field(default=5e-4, gt=0)
    warmup_steps: int = Field(default=20, ge=0)
    mask_probability: float = Field(default=0.15, gt=0, lt=1)
    track_every: int = Field(default=20, ge=1)
    extra_text_dir: Path | None = None
    seed: int = 13


class Finetuning(_Strict):
    losses: list[Literal["batch_all_triplet", "multiple_negatives"]] = Field(
        default_factory=lambda: ["batch_all_triplet", "multiple_negatives"], min_length=1
    )
    epochs: int = Field(default=2, ge=1)
    batch_size: int = Field(default=32, ge=4)
    learning_rate: float = Field(default=5e-5, gt=0)
    max_length: int = Field(default=96, ge=8, le=8192)
    triplet_margin: float = Field(default=0.3, gt=0, le=2)
    eval_steps: int = Field(default=3, ge=1)
    seed: int = 13


class Config(_Strict):
    """The validated configuration. Paths are absolute."""

    paths: Paths
    data: DataSettings = DataSettings()
    models: Models
    encoding: Encoding = Encoding()
    pretraining: Pretraining = Pretraining()
    finetuning: Finetuning = Finetuning()
    source: Path = Field(default=Path("config.yaml"), exclude=True)

    def model_spec(self, role: str) -> ModelSpec:
        """The :class:`ModelSpec` of a role (``baseline``, ``contrastive``, ``finetune_base``)."""
        roles = type(self.models).model_fields
        if role not in roles:
            raise ConfigError(f"unknown model role {role!r}; roles are {', '.join(roles)}")
        return getattr(self.models, role)

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


def _yaml_error(path: Path, exc: yaml.YAMLError) -> ConfigError:
    mark = getattr(exc, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(exc, "problem", None) or str(exc)
    return ConfigError(
        f"{path}: malformed YAML{where}: {problem}. "
        "Fix the indentation or quoting there (values containing ':' or '#' need quotes)."
    )


def _validation_error(path: Path, exc: ValidationError) -> ConfigError:
    lines = []
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"])
        value = err.get("input")
        if err["type"] == "extra_forbidden":
            parent = key.rsplit(".", 1)[0] if "." in key else "the top level"
            fix = f"remove it or check its spelling; see config.yaml in the repository for the keys allowed under {parent}"
            lines.append(f"unknown key '{key}' (value {value!r}): {fix}")
        elif err["type"] == "missing":
            lines.append(f"missing key '{key}': add it (see config.yaml in the repository for an example)")
        else:
            lines.append(f"key '{key}' has bad value {value!r}: {err['msg']}")
    return ConfigError(f"{path}: invalid configuration:\n  - " + "\n  - ".join(lines))


def _resolve(base: Path, value: Path | None) -> Path | None:
    if value is None:
        return None
    value = Path(os.path.expanduser(str(value)))
    return value if value.is_absolute() else (base / value).resolve()


def _check_writable(path: Path, source: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise ConfigError(
            f"{source}: key 'paths.results_dir' = {str(path)!r} cannot be created or written "
            f"({exc.strerror or exc}). Point it at a folder you can write to."
        ) from None


def config_path(explicit: str | Path | None = None) -> Path:
    """The config file to use: ``explicit``, else ``$ANISOTROPY_BOOK_CONFIG``, else the repo's ``config.yaml``."""
    chosen = explicit or os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG
    return Path(chosen).expanduser().resolve()


def load_config(path: str | Path | None = None, *, check_data: bool = True) -> Config:
    """Read, validate and resolve a configuration file.

    Relative paths are resolved against the folder holding the file. With
    ``check_data`` the data folder must exist and the results folder must be writable.

    >>> cfg = load_config("config.yaml")          # doctest: +SKIP
    >>> cfg.model_spec("contrastive").name         # doctest: +SKIP
    'packaged:all-MiniLM-L6-v2'
    """
    source = config_path(path)
    if not source.is_file():
        raise ConfigError(
            f"{source}: config file not found. Pass --config PATH, set {CONFIG_ENV}, "
            "or run from the repository root where config.yaml lives."
        )
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise _yaml_error(source, exc) from None
    except UnicodeDecodeError:
        raise ConfigError(f"{source}: not UTF-8 text; save the file as UTF-8.") from None
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{source}: expected a mapping with keys 'paths' and 'models' at the top level, "
            f"got {type(raw).__name__}. See config.yaml in the repository for the layout."
        )
    try:
        cfg = Config.model_validate({**raw, "source": source})
    except ValidationError as exc:
        raise _validation_error(source, exc) from None

    base = source.parent
    paths = cfg.paths.model_copy(
        update={
            "data_dir": _resolve(base, cfg.paths.data_dir),
            "results_dir": _resolve(base, cfg.paths.results_dir),
            "second_data_dir": _resolve(base, cfg.paths.second_data_dir),
        }
    )
    pre = cfg.pretraining.model_copy(update={"extra_text_dir": _resolve(base, cfg.pretraining.extra_text_dir)})
    cfg = cfg.model_copy(update={"paths": paths, "pretraining": pre})

    if check_data:
        if not paths.data_dir.exists():
            raise ConfigError(
                f"{source}: key 'paths.data_dir' = {str(paths.data_dir)!r} does not exist. "
                "Point it at a folder of subject sub-folders, a JSONL/CSV/Parquet file or a .tar.gz/.zip archive."
            )
        _check_writable(paths.results_dir, source)
    _check_subject_lists(cfg)
    return cfg


def _check_subject_lists(cfg: Config) -> None:
    subjects, train = cfg.data.subjects, cfg.data.train_subjects
    for key, values in (("data.subjects", subjects), ("data.train_subjects", train)):
        if values is not None and (len(values) == 0 or len(set(values)) != len(values)):
            raise ConfigError(
                f"{cfg.source}: key '{key}' = {values!r} must be a non-empty list without repeats, or null."
            )
    if subjects and train and not set(train) <= set(subjects):
        missing = sorted(set(train) - set(subjects))
        raise ConfigError(
            f"{cfg.source}: key 'data.train_subjects' names {missing} which 'data.subjects' leaves out; "
            "add them to data.subjects or remove them from data.train_subjects."
        )
