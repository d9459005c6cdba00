"""``cocoa data check``: what the MMEB-V2 readers find in a data folder, task by task.

Every task of :data:`cocoa.data.mmeb_v2.PUBLISHED` is located and read by the reader evaluation
uses, with bad rows skipped and counted, so the report says what ``cocoa eval`` will score:

* ``found``: the folder, the rows read (queries) and candidates, and the rows left out because
  their media are missing or their fields are malformed (with the first reason);
* ``missing``: where it looked, and what it found nearby;
* ``malformed``: the task is there but cannot be read (the file, row and field).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cocoa.core.errors import DataError
from cocoa.data.items import EvalDataset
from cocoa.data.mmeb_v2 import PUBLISHED, locate
from cocoa.data.published import read_located
from cocoa.data.visdoc import CorpusDataset

STATUSES = ("found", "missing", "malformed")


@dataclass(frozen=True)
class TaskCheck:
    """What the readers found of one task."""

    name: str
    modality: str
    status: str
    folder: str = ""
    rows: int = 0
    candidates: int = 0
    skipped: int = 0
    reason: str = ""
    """Why a task is missing or malformed, or the first row left out of a found one."""
    seconds: float = 0.0

    @property
    def complete(self) -> bool:
        """Found with every row usable."""
        return self.status == "found" and self.skipped == 0


class _FirstSkip(logging.Handler):
    """Keeps the first row a reader skipped, as it logs it."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.first: str | None = None

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if self.first is None and message.startswith("skipping bad row: "):
            self.first = message.removeprefix("skipping bad row: ")


@contextmanager
def _first_skip() -> Iterator[_FirstSkip]:
    handler = _FirstSkip()
    logger = logging.getLogger("cocoa.data.rows")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


def _candidates(dataset: EvalDataset | CorpusDataset) -> int:
    if isinstance(dataset, CorpusDataset):
        return len(dataset.corpus)
    return int((dataset.candidates >= 0).sum())


def check_task(root: Path, name: str, image_root: Path | None = None) -> TaskCheck:
    """Locate and read task ``name`` under ``root`` (see the module docstring)."""
    task = PUBLISHED[name]
    started = time.perf_counter()
    try:
        located = locate(root, task)
    except DataError as exc:
        return TaskCheck(name, task.modality, "missing", reason=str(exc), seconds=time.perf_counter() - started)
    folder = str(located.folder)
    with _first_skip() as skips:
        try:
            dataset = read_located(root, located, image_root, skip_bad=True)
        except (DataError, OSError) as exc:
            return TaskCheck(name, task.modality, "malformed", folder, reason=str(exc),
                             seconds=time.perf_counter() - started)
    return TaskCheck(name, task.modality, "found", folder, len(dataset.queries), _candidates(dataset),
                     dataset.skipped, skips.first or "", time.perf_counter() - started)


def check_published(root: Path, image_root: Path | None = None,
                    progress: Callable[[TaskCheck], None] | None = None,
                    names: Sequence[str] | None = None) -> list[TaskCheck]:
    """:func:`check_task` for every MMEB-V2 task (or those ``names``), in benchmark order; ``progress``
    sees each as it ends."""
    checks = []
    for name in names if names is not None else PUBLISHED:
        check = check_task(root, name, image_root)
        if progress is not None:
            progress(check)
        checks.append(check)
    return checks
