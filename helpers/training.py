"""One way to run a training job: build once under a lock, publish atomically, keep a log.

Pre-training (:mod:`helpers.pretraining`) and fine-tuning (:mod:`helpers.finetuning`) both
train into a temporary folder that is renamed into place only when complete (see
:func:`helpers.storage.building_folder`), under a per-model lock, and both leave a
:class:`TrainingLog` beside the weights. Chapters, the command line and ``bench/`` read
logs through :meth:`TrainingLog.load`, never by parsing the file themselves.

A job launched as several data-parallel processes (``torchrun --nproc_per_node=N``,
``accelerate launch``) trains together with ``build_once(..., collective=True)``: every
process runs the training, and only the main one (rank 0) takes the lock and publishes
the folder and its log; the others wait for it and return the same path.

Example
-------
>>> import tempfile, pathlib
>>> folder = pathlib.Path(tempfile.mkdtemp()) / "toy-model"
>>> def train(out):
...     return TrainingLog(records=[{"step": 1, "loss": 0.5}], seconds=0.1, parameters=3)
>>> path = build_once(folder, {"settings": 1}, train)
>>> TrainingLog.load(path).frame()["loss"].tolist()
[0.5]
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pandas as pd

from .storage import building_folder, is_complete, model_lock

LOG_FILE = "training_log.json"
# Where launchers put the number of processes and this process's rank (torchrun and
# accelerate launch set the first; MPI launchers the others), as accelerate reads them.
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


def source_version(source: str) -> str:
    r"""A short hash of Python ``source`` that ignores docstrings, comments and layout.

    >>> a = source_version('def f(x):\n    "Double it."\n    return 2 * x  # why\n')
    >>> a == source_version("def f(x):\n    return 2*x\n")
    True
    >>> a == source_version("def f(x):\n    return 3 * x\n")
    False
    """
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (
            isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef)
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return hashlib.sha256(ast.dump(tree).encode()).hexdigest()[:12]


def code_version(module) -> str:
    """:func:`source_version` of a module's file: part of every trained model's folder key.

    An edit of what a training module does (not of its docstrings or comments) changes
    the key, so the next ``python -m helpers train`` trains the model again instead of
    reusing weights the old code made.
    """
    return source_version(inspect.getsource(module))


def _first_int_env(names: tuple[str, ...], default: int) -> int:
    for name in names:
        if (value := os.environ.get(name, "").strip()).isdigit():
            return int(value)
    return default


def process_count() -> int:
    """How many data-parallel processes this job runs as (1 unless a launcher started several).

    >>> process_count()  # doctest: +SKIP
    1
    """
    return max(1, _first_int_env(WORLD_SIZE_VARIABLES, 1))


def is_main_process() -> bool:
    """True in a single process, and in rank 0 of a multi-process job (the one that writes).

    >>> is_main_process()  # doctest: +SKIP
    True
    """
    return _first_int_env(RANK_VARIABLES, 0) == 0


@dataclass
class TrainingLog:
    """What a training run recorded: per-checkpoint ``records``, wall ``seconds``, size.

    ``summary`` holds run-level figures (for example the final held-out loss).
    """

    records: list[dict]
    seconds: float
    parameters: int
    summary: dict = field(default_factory=dict)

    def frame(self) -> pd.DataFrame:
        """The records as a table, one row per checkpoint."""
        return pd.DataFrame(self.records)

    def save(self, folder: Path) -> None:
        (Path(folder) / LOG_FILE).write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, folder: Path) -> TrainingLog:
        """Read the log saved beside a trained model."""
        data = json.loads((Path(folder) / LOG_FILE).read_text())
        return cls(**{k: data[k] for k in ("records", "seconds", "parameters", "summary")})


def build_once(
    folder: Path, inputs: dict, train: Callable[[Path], TrainingLog], *, collective: bool = False
) -> Path:
    """Return ``folder``, first running ``train(tmp)`` and publishing its result if needed.

    ``inputs`` (what defines the model) is written into the completion marker. A second
    process asking for the same folder waits on the lock and then reuses the result; a
    killed run leaves nothing that looks complete, and the next call cleans up and retrains.

    With ``collective`` and several data-parallel processes, ``train`` is one distributed
    training that every process must join: see :func:`build_together`.
    """
    if collective and process_count() > 1:
        return build_together(folder, inputs, train)
    if is_complete(folder):
        return folder
    with model_lock(folder):
        if is_complete(folder):  # another process finished it while we waited
            return folder
        with building_folder(folder, inputs) as tmp:
            train(tmp).save(tmp)
    return folder


def build_together(folder: Path, inputs: dict, train: Callable[[Path], TrainingLog]) -> Path:
    """:func:`build_once` for a training run by every process of a data-parallel job.

    Rank 0 holds the lock, decides whether the model must be trained and tells the others
    (all of them must enter the training, or it would hang); everyone trains; rank 0 alone
    saves into the temporary folder and publishes it. The other ranks train into a scratch
    folder that is deleted (``train`` writes nothing there off rank 0), then wait until the
    folder is published and return the same path.

    Under ``torchrun --nproc_per_node=2``, in both processes:

    >>> build_together(folder, {"k": 1}, train)  # doctest: +SKIP
    PosixPath('results/models/toy-model')
    """
    from accelerate import PartialState
    from accelerate.utils import broadcast_object_list

    # The process group the trainer will reuse: gloo on CPU, NCCL on GPUs.
    state = PartialState(cpu=not _cuda_available())
    if not state.is_main_process:
        if broadcast_object_list([None])[0]:
            with tempfile.TemporaryDirectory(prefix=f"rank{state.process_index}-") as scratch:
                train(Path(scratch))
        state.wait_for_everyone()  # until rank 0 has published the folder
        return folder
    with model_lock(folder):
        needed = broadcast_object_list([not is_complete(folder)])[0]
        if needed:
            with building_folder(folder, inputs) as tmp:
                train(tmp).save(tmp)
    state.wait_for_everyone()
    return folder


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cpu_bf16(precision: str) -> bool:
    """Whether to train in bf16 autocast: when asked, or with ``auto`` where the CPU has
    native bf16 instructions (about 1.5x faster steps there, and slower elsewhere)."""
    if precision != "auto":
        return precision == "bf16"
    import torch

    return bool(
        torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
    )
