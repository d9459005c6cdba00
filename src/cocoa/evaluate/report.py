"""Readable outputs: ``summary.json``, ``summary.md``, a bar chart, and side-by-side comparisons."""

from __future__ import annotations

import io
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from rich.table import Table

from cocoa.evaluate import files
from cocoa.evaluate.registry import META_TASKS
from cocoa.evaluate.summary import GroupScore, Summary

TASK_LABELS = {"classification": "Classification", "vqa": "VQA", "retrieval": "Retrieval",
               "grounding": "Grounding"}
TASK_COLOURS = {"classification": "#4C72B0", "vqa": "#DD8452", "retrieval": "#55A868", "grounding": "#C44E52"}


def format_group(group: GroupScore | None) -> str:
    """``61.20``, ``61.20 (partial 3/10)`` or ``-`` when nothing is scored."""
    if group is None or group.score is None:
        return "-"
    text = f"{group.score:.2f}"
    return text if group.complete else f"{text} (partial {group.done}/{group.total})"


def _groups(summary: Summary) -> dict[str, GroupScore]:
    """Overall, IND, OOD, then the meta-tasks, keyed by display label."""
    groups = {"Overall": summary.overall, **summary.splits}
    groups.update({TASK_LABELS.get(task, task): summary.meta_tasks[task]
                   for task in META_TASKS if task in summary.meta_tasks})
    return groups


def _label(label: str, complete: bool) -> str:
    return label if complete or label != "Overall" else "Overall (PARTIAL)"


def summary_markdown(summary: Summary) -> str:
    """The contents of ``summary.md``."""
    lines = [f"# {summary.benchmark} results", "", f"Encoder fingerprint: `{summary.fingerprint}`", ""]
    if not summary.complete:
        lines += [f"**PARTIAL RUN: {summary.overall.done} of {summary.overall.total} datasets scored. "
                  "The overall below is the mean over the scored datasets only, not the benchmark score.** "
                  f"Missing: {', '.join(summary.missing)}.", ""]
    groups = _groups(summary)
    lines += ["| " + " | ".join(_label(label, summary.complete) for label in groups) + " |",
              "|" + "---|" * len(groups),
              "| " + " | ".join(format_group(group) for group in groups.values()) + " |", "",
              "Precision@1 in percent. Overall, IND and OOD are means over datasets (not over meta-tasks).", "",
              "| Dataset | Meta-task | Split | Precision@1 |", "|---|---|---|---|"]
    lines += [f"| {name} | {TASK_LABELS.get(d.meta_task, d.meta_task)} | {d.split} | {d.score:.2f} |"
              for name, d in summary.datasets.items()]
    return "\n".join(lines) + "\n"


def score_chart(summary: Summary) -> bytes:
    """A PNG bar chart of per-dataset scores coloured by meta-task, with the overall as a line."""
    names = list(summary.datasets)
    figure = Figure(figsize=(max(6.0, 0.35 * len(names) + 2), 4.5), layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    scores = [d.score for d in summary.datasets.values()]
    colours = [TASK_COLOURS.get(d.meta_task, "#888888") for d in summary.datasets.values()]
    bars = axes.bar(range(len(names)), scores, color=colours)
    axes.bar_label(bars, fmt="%.1f", fontsize=7)
    axes.set_xticks(range(len(names)), names, rotation=70, ha="right", fontsize=8)
    axes.set_ylim(0, 105)
    axes.set_ylabel("Precision@1 (%)")
    handles = [Patch(color=TASK_COLOURS[task], label=TASK_LABELS[task])
               for task in META_TASKS if task in summary.meta_tasks]
    if summary.overall.score is not None:
        handles.append(axes.axhline(summary.overall.score, color="black", linestyle="--", linewidth=1,
                                    label=f"overall {format_group(summary.overall)}"))
    figure.legend(handles=handles, fontsize=8, loc="outside right upper")
    state = "" if summary.complete else " (PARTIAL)"
    axes.set_title(f"{summary.benchmark}{state}: {summary.fingerprint[:16]}")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=120)
    return buffer.getvalue()


def write_reports(summary: Summary, out_dir: Path) -> None:
    """Write ``summary.json``, ``summary.md`` and ``scores.png`` atomically."""
    files.write_json(out_dir / "summary.json", summary.to_dict())
    files.write_text(out_dir / "summary.md", summary_markdown(summary))
    files.write_bytes(out_dir / "scores.png", score_chart(summary))


def summary_table(summary: Summary) -> Table:
    """A rich table of one summary: group means, then datasets."""
    title = summary.benchmark if summary.complete else f"{summary.benchmark} (PARTIAL)"
    table = Table("", "Precision@1", title=title)
    for label, group in _groups(summary).items():
        table.add_row(_label(label, summary.complete), format_group(group))
    table.add_section()
    for name, dataset in summary.datasets.items():
        table.add_row(name, f"{dataset.score:.2f}")
    return table


def _delta(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b - a:+.2f}"


def compare_table(a: Summary, b: Summary, labels: tuple[str, str] = ("A", "B")) -> Table:
    """Side by side: per dataset and per group, ``A``, ``B`` and ``B - A``."""
    table = Table("", labels[0], labels[1], "Delta", title=f"{a.benchmark} vs {b.benchmark}")
    names = list(a.datasets) + [name for name in b.datasets if name not in a.datasets]
    for name in names:
        da, db = a.datasets.get(name), b.datasets.get(name)
        table.add_row(name, f"{da.score:.2f}" if da else "-", f"{db.score:.2f}" if db else "-",
                      _delta(da.score if da else None, db.score if db else None))
    table.add_section()
    groups_a, groups_b = _groups(a), _groups(b)
    for label in list(groups_a) + [label for label in groups_b if label not in groups_a]:
        ga, gb = groups_a.get(label), groups_b.get(label)
        table.add_row(_label(label, a.complete and b.complete), format_group(ga), format_group(gb),
                      _delta(ga.score if ga else None, gb.score if gb else None))
    return table
