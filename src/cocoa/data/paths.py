"""Media paths named by data rows stay inside the folder they are relative to.

A row of a dataset or corpus names its images, videos and frame folders relative to a root (the
image root, the frame root of a task, the folder of a corpus file). A path that leads outside it,
absolute or through ``..``, is refused, so a row cannot make cocoa open and embed another file of
the machine. The check is on the path as written (no ``..`` part, an absolute path only into the folder; symlinks not followed): a link that
the owner of the data folder placed in it is followed, as the Hugging Face cache's snapshot folders
need. ``allow_outside`` (``--allow-outside-paths``) lifts the rule for data that names absolute paths.
"""

from __future__ import annotations

import os
from pathlib import Path

#: The option that lifts the rule, named in every refusal.
ALLOW_OPTION = "--allow-outside-paths"


def outside_problem(root: str | Path, relative: str) -> str | None:
    """Why ``relative`` may not be opened under ``root`` (``None``: it stays inside): it has a ``..`` part
    (even one that comes back, since ``link/..`` ends beside the link's target, not in ``root``), or it is
    an absolute path to somewhere else."""
    base = os.path.normpath(os.path.abspath(root))
    target = os.path.normpath(os.path.join(base, relative))
    if ".." not in Path(relative).parts and (target == base or target.startswith(base.rstrip(os.sep) + os.sep)):
        return None
    return (f"path {relative!r} leads outside {base} (an absolute path or '..'); media paths are relative to "
            f"that folder ({ALLOW_OPTION} allows others)")
