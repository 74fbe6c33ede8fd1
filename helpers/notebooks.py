"""Execute the chapters outside the site build (for ``python -m helpers claims --run``).

Each chapter's MyST source is read with Jupytext and run top to bottom in a fresh kernel,
with ``ANISOTROPY_BOOK_CONFIG`` pointing at the configuration to use; claims the chapters
make are recorded as in a build (see :func:`helpers.book.claim`). The chapters only load
models: train them first (``python -m helpers train``; ``claims --run`` does).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from .config import CONFIG_ENV, REPO_ROOT

CHAPTERS = REPO_ROOT / "chapters"


class ChapterError(RuntimeError):
    """A chapter failed to execute; the message names it and holds the cell's traceback."""


def execute_chapters(config: Path, chapters: list[Path] | None = None, timeout: int = 1800) -> None:
    """Run every chapter (or ``chapters``) with ``config``; raise on the first failing cell.

    Raises :class:`ChapterError` naming the chapter, with the failing cell's traceback.
    """
    import jupytext
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    previous = os.environ.get(CONFIG_ENV)
    os.environ[CONFIG_ENV] = str(Path(config).resolve())
    try:
        for path in chapters or sorted(CHAPTERS.glob("*.md")):
            print(f"executing {path.name} ...", file=sys.stderr, flush=True)
            notebook = jupytext.read(path)
            client = NotebookClient(
                notebook,
                timeout=timeout,
                kernel_name="python3",
                resources={"metadata": {"path": str(path.parent)}},
            )
            try:
                client.execute()
            except (CellExecutionError, CellTimeoutError, DeadKernelError) as exc:
                raise ChapterError(f"chapter {path.name} failed to execute:\n{exc}") from None
    finally:
        if previous is None:
            os.environ.pop(CONFIG_ENV, None)
        else:
            os.environ[CONFIG_ENV] = previous
