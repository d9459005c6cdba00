"""The report of a pipeline run: a Markdown page with the score table and training curves."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from cocoa.core.files import atomic_path, write_text
from cocoa.evaluate.report import summary_markdown
from cocoa.evaluate.summary import Summary


def read_metrics(stage_dir: Path) -> list[dict]:
    path = stage_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_curves(stage_dirs: list[Path], path: Path) -> None:
    """One panel per stage: its loss (and loss parts) against the step."""
    fig, axes = plt.subplots(1, max(1, len(stage_dirs)), figsize=(4 * max(1, len(stage_dirs)), 3.2), squeeze=False)
    for ax, folder in zip(axes[0], stage_dirs, strict=False):
        rows = read_metrics(folder)
        steps = [r["step"] for r in rows]
        for key in ("loss", "mntp", "mae"):
            if rows and key in rows[0]:
                ax.plot(steps, [r[key] for r in rows], label=key)
        ax.set_title(folder.name)
        ax.set_xlabel("step")
        ax.legend()
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)


def chance_lines(summary: dict, chance: dict[str, float]) -> list[str]:
    """Each scored dataset against a random ranking's Precision@1 (from the MiniMMEB manifest)."""
    lines = ["## Against chance", "", "| dataset | Precision@1 | chance | margin |", "|---|---|---|---|"]
    for name, score in summary["datasets"].items():
        if name in chance:
            lines.append(f"| {name} | {score['score']:.2f} | {chance[name]:.2f} | {score['score'] - chance[name]:+.2f} |")
    return lines


def write_run_report(out: Path, stage_dirs: list[Path], summary: dict, timings: dict[str, float],
                     chance: dict[str, float] | None = None) -> Path:
    """``<out>/report.md`` with the score table, each dataset against ``chance`` (if known), timings
    and ``training_curves.png``."""
    plot_curves(stage_dirs, out / "training_curves.png")
    lines = [f"# Run report: {out}", "", summary_markdown(Summary.from_dict(summary)), ""]
    if chance:
        lines += [*chance_lines(summary, chance), ""]
    lines += ["## Timings", "", "| part | seconds |", "|---|---|"]
    lines += [f"| {name} | {seconds:.1f} |" for name, seconds in timings.items()]
    lines += ["", "## Training curves", "", "![training curves](training_curves.png)", "",
              "## Scores", "", "![scores](eval/scores.png)", ""]
    path = out / "report.md"
    write_text(path, "\n".join(lines))
    return path
