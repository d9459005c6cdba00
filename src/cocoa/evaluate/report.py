"""Readable outputs: ``summary.json``, ``summary.md``, a bar chart, and side-by-side comparisons."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.table import Table

from cocoa.core import files
from cocoa.evaluate.registry import META_TASKS
from cocoa.evaluate.summary import DatasetScore, GroupScore, Summary

TASK_LABELS = {"classification": "Classification", "vqa": "VQA", "retrieval": "Retrieval",
               "grounding": "Grounding", "visdoc": "Visual documents", "video_classification": "Video classification",
               "video_qa": "Video QA", "video_retrieval": "Video retrieval", "moment_retrieval": "Moment retrieval",
               "other": "Other"}
MODALITY_LABELS = {"image": "Image", "video": "Video", "visdoc": "VisDoc"}
TASK_COLOURS = {"classification": "#4C72B0", "vqa": "#DD8452", "retrieval": "#55A868", "grounding": "#C44E52",
                "visdoc": "#8172B3", "video_classification": "#937860", "video_qa": "#DA8BC3",
                "video_retrieval": "#8C8C8C", "moment_retrieval": "#CCB974", "other": "#64B5CD"}
METRIC_LABELS = {"hit@1": "Precision@1", "ndcg@5": "NDCG@5"}


def format_group(group: GroupScore | None) -> str:
    """``61.20``, ``61.20 (partial 3/10)`` or ``-`` when nothing is scored."""
    if group is None or group.score is None:
        return "-"
    text = f"{group.score:.2f}"
    return text if group.complete else f"{text} (partial {group.done}/{group.total})"


def _groups(summary: Summary) -> dict[str, GroupScore]:
    """Overall, the modalities (when several), IND, OOD, then the meta-tasks, keyed by display label."""
    groups = {"Overall": summary.overall}
    groups.update({MODALITY_LABELS[kind]: group for kind, group in summary.modalities.items()})
    groups.update(summary.splits)
    groups.update({TASK_LABELS.get(task, task): summary.meta_tasks[task]
                   for task in META_TASKS if task in summary.meta_tasks})
    return groups


def _label(label: str, complete: bool) -> str:
    return label if complete or label != "Overall" else "Overall (PARTIAL)"


def summary_markdown(summary: Summary) -> str:
    """The contents of ``summary.md``."""
    lines = [f"# {summary.benchmark} results", "", f"Encoder fingerprint: `{summary.fingerprint}`", ""]
    if summary.protocol is not None:
        lines += [f"Protocol: {protocol_line(summary.protocol)}", ""]
    if not summary.complete:
        lines += [f"**PARTIAL RUN: {summary.overall.done} of {summary.overall.total} datasets scored. "
                  "The overall below is the mean over the scored datasets only, not the benchmark score.** "
                  f"Missing: {', '.join(summary.missing)}.", ""]
    if summary.failed:
        lines += ["## Not scored: these datasets failed (the run went on without them)", "",
                  "| Dataset | Reason |", "|---|---|"]
        lines += [f"| {name} | {reason.replace('|', '/')} |" for name, reason in summary.failed.items()]
        lines += [""]
    if summary.stale:
        lines += ["## Stale: scored before their data changed, not run now (run them again)", "",
                  "| Dataset | Why |", "|---|---|"]
        lines += [f"| {name} | {reason.replace('|', '/')} |" for name, reason in summary.stale.items()]
        lines += [""]
    groups = _groups(summary)
    lines += ["| " + " | ".join(_label(label, summary.complete) for label in groups) + " |",
              "|" + "---|" * len(groups),
              "| " + " | ".join(format_group(group) for group in groups.values()) + " |", ""]
    mixed = any(d.metric != "hit@1" for d in (*summary.datasets.values(), *summary.extra.values()))
    if mixed:
        lines += ["Scores in percent: Precision@1 (hit@1) or NDCG@5 (linear gain), as the Metric column says. "
                  "Overall, IND and OOD are means over datasets (not over meta-tasks).", ""]
    else:
        lines += ["Precision@1 in percent. Overall, IND and OOD are means over datasets (not over meta-tasks).", ""]
    lines += _dataset_lines(summary.datasets, mixed)
    if summary.extra:
        lines += ["", f"## Not in {summary.benchmark} (reported apart, in none of the means above)", ""]
        lines += _dataset_lines(summary.extra, mixed)
    return "\n".join(lines) + "\n"


def _dataset_lines(datasets: dict[str, DatasetScore], with_metric: bool) -> list[str]:
    """A markdown table of datasets (with a Metric column when metrics differ)."""
    if with_metric:
        lines = ["| Dataset | Meta-task | Split | Metric | Score |", "|---|---|---|---|---|"]
        return lines + [f"| {name} | {TASK_LABELS.get(d.meta_task, d.meta_task)} | {d.split or '-'} | "
                        f"{METRIC_LABELS.get(d.metric, d.metric)} | {d.score:.2f} |" for name, d in datasets.items()]
    lines = ["| Dataset | Meta-task | Split | Precision@1 |", "|---|---|---|---|"]
    return lines + [f"| {name} | {TASK_LABELS.get(d.meta_task, d.meta_task)} | {d.split or '-'} | {d.score:.2f} |"
                    for name, d in datasets.items()]


def score_chart(summary: Summary) -> bytes:
    """A PNG bar chart of per-dataset scores coloured by meta-task, with the overall as a line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg  # here: matplotlib costs every command 0.8 s
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

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
    metrics = {d.metric for d in summary.datasets.values()}
    axes.set_ylabel("Precision@1 (%)" if metrics <= {"hit@1"} else "Score (%): Precision@1 or NDCG@5")
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


def protocol_line(protocol: dict[str, Any]) -> str:
    """``cocoa-release`` (image square 672, 200704-1003520 px; vision_block; embedding token <|endoftext|>; ...)."""
    image = protocol.get("image") or {}
    sizes = [f"square {image['square']}" if image.get("square") else "no squash",
             f"{image.get('min_pixels') or 'processor'}-{image.get('max_pixels') or 'processor'} px"]
    token = protocol.get("embedding_token") or "none"
    return (f"`{protocol.get('name')}` (image {', '.join(sizes)}; {protocol.get('image_tokens')} image tokens; "
            f"embedding token {token}; pool {protocol.get('pooling')}; {protocol.get('attention')} attention; "
            f"{protocol.get('positions')} positions)")


def summary_table(summary: Summary) -> Table:
    """A rich table of one summary: group means, then datasets."""
    title = summary.benchmark if summary.complete else f"{summary.benchmark} (PARTIAL)"
    if summary.protocol is not None:
        title += f", protocol {summary.protocol.get('name')}"
    mixed = any(d.metric != "hit@1" for d in (*summary.datasets.values(), *summary.extra.values()))
    table = Table("", "Score" if mixed else "Precision@1", title=title)
    for label, group in _groups(summary).items():
        table.add_row(_label(label, summary.complete), format_group(group))
    table.add_section()
    for name, dataset in summary.datasets.items():
        table.add_row(name, _score_cell(dataset))
    if summary.extra:
        table.add_section()
        table.add_row(f"[bold]not in {summary.benchmark}[/bold]", "")
        for name, dataset in summary.extra.items():
            table.add_row(f"{name} ({TASK_LABELS.get(dataset.meta_task, dataset.meta_task)})", _score_cell(dataset))
    return table


def _score_cell(dataset: DatasetScore) -> str:
    """``61.20``, or ``61.20 NDCG@5`` for a dataset not scored by Precision@1."""
    text = f"{dataset.score:.2f}"
    return text if dataset.metric == "hit@1" else f"{text} {METRIC_LABELS.get(dataset.metric, dataset.metric)}"


def _delta(a: float | None, b: float | None) -> str:
    return "-" if a is None or b is None else f"{b - a:+.2f}"


def compare_table(a: Summary, b: Summary, labels: tuple[str, str] = ("A", "B")) -> Table:
    """Side by side: per dataset (extras included) and per group, ``A``, ``B`` and ``B - A``."""
    table = Table("", labels[0], labels[1], "Delta", title=f"{a.benchmark} vs {b.benchmark}")
    scores_a, scores_b = {**a.datasets, **a.extra}, {**b.datasets, **b.extra}
    names = list(scores_a) + [name for name in scores_b if name not in scores_a]
    for name in names:
        da, db = scores_a.get(name), scores_b.get(name)
        table.add_row(name, f"{da.score:.2f}" if da else "-", f"{db.score:.2f}" if db else "-",
                      _delta(da.score if da else None, db.score if db else None))
    table.add_section()
    groups_a, groups_b = _groups(a), _groups(b)
    for label in list(groups_a) + [label for label in groups_b if label not in groups_a]:
        ga, gb = groups_a.get(label), groups_b.get(label)
        table.add_row(_label(label, a.complete and b.complete), format_group(ga), format_group(gb),
                      _delta(ga.score if ga else None, gb.score if gb else None))
    return table
