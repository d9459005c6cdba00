"""Read an MMEB-V2 task found where it is published (:func:`cocoa.data.mmeb_v2.locate`) with its reader."""

from __future__ import annotations

from pathlib import Path

from cocoa.data.eval_sets import LoadedEvalDataset, read_eval_dataset
from cocoa.data.instruct import REFERENCE_FORMATS
from cocoa.data.mmeb_v2 import LocatedTask
from cocoa.data.video_tasks import VIDEO_TASKS, read_video_task
from cocoa.data.visdoc import CorpusDataset, read_visdoc_dataset


def default_image_root(data_dir: Path, modality: str = "image") -> Path:
    """Where media paths resolve when ``--images`` is not given: ``DATA/image-tasks`` for image tasks
    and ``DATA/visdoc-tasks`` for extracted pages where VLM2Vec's layout has them (its yaml's
    ``image_root``), else ``DATA/images`` if present, else ``DATA``."""
    data_dir = Path(data_dir)
    published = data_dir / ("visdoc-tasks" if modality == "visdoc" else "image-tasks")
    if modality in ("image", "visdoc") and published.is_dir():
        return published
    return data_dir / "images" if (data_dir / "images").is_dir() else data_dir


def read_located(data_dir: Path, located: LocatedTask, image_root: Path | None = None, *, skip_bad: bool = False,
                 check_images: bool = True, instruction_format: str | None = None,
                 allow_outside_paths: bool = False) -> LoadedEvalDataset | CorpusDataset:
    """The dataset of a located task: video frames under ``data_dir``, images and pages under ``image_root``
    (default :func:`default_image_root`); image tasks in the instruction-split form are read in
    ``instruction_format``, by default the reference format of the task."""
    task = located.task
    root = Path(image_root) if image_root is not None else default_image_root(data_dir, task.modality)
    if task.modality == "video":
        return read_video_task(located.folder, VIDEO_TASKS[task.name], data_dir, skip_bad=skip_bad,
                               parts=located.parts, allow_outside_paths=allow_outside_paths)
    if task.modality == "visdoc":
        return read_visdoc_dataset(located.folder, root, name=task.name, skip_bad=skip_bad,
                                   check_images=check_images, parts=located.parts,
                                   allow_outside_paths=allow_outside_paths)
    return read_eval_dataset(located.folder, task.name, root, skip_bad=skip_bad, check_images=check_images,
                             instruction_format=instruction_format or REFERENCE_FORMATS.get(task.name),
                             files=located.files, allow_outside_paths=allow_outside_paths)
