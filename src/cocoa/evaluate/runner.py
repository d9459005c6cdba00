"""Run an encoder over the datasets of a benchmark: de-duplicate, cache, score, resume."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from cocoa.core import files
from cocoa.core.defaults import ENCODE_BATCH_SIZE
from cocoa.core.errors import ConfigError, DataError
from cocoa.data.eval_sets import list_eval_datasets
from cocoa.data.items import EvalDataset, Item
from cocoa.data.visdoc import CorpusDataset
from cocoa.evaluate.cache import EmbeddingCache
from cocoa.evaluate.cards import Card
from cocoa.evaluate.freshness import (
    HASHES_FILE,
    FileHashes,
    content_key,
    dataset_fingerprint,
    file_record,
    stale_reason,
)
from cocoa.evaluate.plan import Plan, plan, read_dataset
from cocoa.evaluate.ranking import Rankings, rank_corpus
from cocoa.evaluate.registry import Benchmark, DatasetInfo
from cocoa.evaluate.report import write_reports
from cocoa.evaluate.scoring import Predictions, precision_at_1, score_rows
from cocoa.evaluate.summary import Summary, summarize

#: Items handed to the encoder per call (times the batch size); the cache is written after each.
CHUNK_BATCHES = 8

logger = logging.getLogger(__name__)
CacheKey = Callable[[Item], tuple[str, str]]


class ItemEncoder(Protocol):
    """What the evaluator needs from a model."""

    def encode_items(self, items: Sequence[Item], *, batch_size: int = ENCODE_BATCH_SIZE,
                     show_progress: bool = False) -> np.ndarray:
        """Float32 ``(n, d)`` L2-normalised embeddings, in the order of ``items``."""
        ...

    def fingerprint(self) -> str:
        """A stable hash of the weights and preprocessing settings."""
        ...

    def item_length(self, item: Item) -> int:
        """The token count used to sort items by length."""
        ...


def protocol_record(encoder: ItemEncoder) -> dict[str, Any] | None:
    """The encoder's protocol as recorded in score files and summaries (``None`` if it has none)."""
    protocol = getattr(encoder, "protocol", None)
    return protocol.to_dict() if protocol is not None else None


@dataclass(frozen=True)
class DatasetResult:
    """The outcome of one dataset: predictions plus how many items were encoded or cached."""

    name: str
    predictions: Predictions | Rankings
    unique_items: int
    encoded: int
    cache_hits: int
    seconds: float
    metric: str = "hit@1"

    @property
    def score(self) -> float:
        """The dataset's score by ``metric``, in percent (Precision@1 for rows with their own candidates)."""
        if isinstance(self.predictions, Rankings):
            return self.predictions.score(self.metric)
        return precision_at_1(self.predictions)


def _encode_missing(encoder: ItemEncoder, name: str, items: Sequence[Item], cache: EmbeddingCache,
                    batch_size: int, show_progress: bool, key: CacheKey) -> int:
    """Encode the items not yet in ``cache``, longest first, storing each chunk; returns the count.

    Under a process group the chunks are dealt out: each round hands rank ``r`` the ``r``-th of
    ``world`` consecutive chunks, and the round's embeddings are gathered on every rank. A rank
    encodes exactly the chunk one process would, so the embeddings do not depend on the world size.
    """
    from cocoa.core.distributed import gather_objects, rank_and_world  # torch, imported late

    rank, world = rank_and_world()
    missing = sorted((item for item in items if key(item) not in cache), key=encoder.item_length, reverse=True)
    if len(set(gather_objects(len(missing)))) > 1:
        raise ConfigError(f"{name}: the ranks found different items missing from their embedding caches; give "
                          "them one shared cache folder (--cache, on a file system every node sees)")
    chunk = max(1, batch_size * CHUNK_BATCHES)
    with tqdm(total=len(missing), desc=name, unit="item", disable=not show_progress or rank != 0) as bar:
        for start in range(0, len(missing), chunk * world):
            part = missing[start:start + chunk * world]
            mine = part[rank * chunk:(rank + 1) * chunk]
            embeddings, failure, error = None, None, None
            try:
                if mine:
                    embeddings = np.asarray(encoder.encode_items(mine, batch_size=batch_size), dtype=np.float32)
                    if embeddings.ndim != 2 or len(embeddings) != len(mine):
                        raise ValueError(f"encoder returned shape {embeddings.shape} for {len(mine)} items")
            except Exception as exc:  # every rank stops, instead of the others waiting forever
                error, failure = exc, (f"{type(exc).__name__}: {exc}", isinstance(exc, DataError))
            shares = gather_objects((embeddings, failure))
            if error is not None:
                raise error
            for other, (_, said) in enumerate(shares):
                if said is not None:  # the same kind of error on every rank: a task's data fails it everywhere
                    kind = DataError if said[1] else RuntimeError
                    raise kind(f"rank {other} failed while encoding {name}: {said[0]}")
            cache.add(name, [key(item) for item in part], np.concatenate([e for e, _ in shares if e is not None]))
            bar.update(len(part))
    return len(missing)


def run_dataset(encoder: ItemEncoder, dataset: EvalDataset | CorpusDataset, cache: EmbeddingCache, *,
                batch_size: int = ENCODE_BATCH_SIZE, show_progress: bool = False, metric: str = "hit@1",
                key: CacheKey = Item.key) -> DatasetResult:
    """Encode each unique item of ``dataset`` once (or take it from ``cache``, by ``key``) and score
    every row against its candidates, or every query against the corpus of a :class:`CorpusDataset`."""
    started = time.perf_counter()
    items = dataset.items
    encoded = _encode_missing(encoder, dataset.name, items, cache, batch_size, show_progress, key)
    embeddings = cache.get([key(item) for item in items])
    if isinstance(dataset, CorpusDataset):
        predictions: Predictions | Rankings = rank_corpus(embeddings, dataset.queries, dataset.corpus,
                                                          dataset.rel_ptr, dataset.rel_doc, dataset.rel_gain)
    else:
        if metric != "hit@1":
            raise ValueError(f"rows with their own candidates are scored by hit@1, not {metric}")
        predictions = score_rows(embeddings, dataset.queries, dataset.candidates, golds=dataset.golds)
    return DatasetResult(dataset.name, predictions, len(items), encoded, len(items) - encoded,
                         time.perf_counter() - started, metric)


def score_path(out_dir: Path, name: str) -> Path:
    """Where the score file of dataset ``name`` goes."""
    return out_dir / f"{name}_score.json"


def read_score(out_dir: Path, name: str, fingerprint: str, data: str | None = None) -> float | None:
    """The stored score of ``name`` if its score file matches ``fingerprint`` (and the dataset
    fingerprint ``data``, when given), else ``None``."""
    return stored_score(out_dir, name, fingerprint, data)[0]


def stored_score(out_dir: Path, name: str, fingerprint: str, data: str | None = None) -> tuple[float | None, str]:
    """``(score, "")`` for a score file that matches, else ``(None, why not)``."""
    try:
        record = json.loads(score_path(out_dir, name).read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return None, ""
    if not isinstance(record, dict):
        return None, ""
    if record.get("fingerprint") != fingerprint:
        return None, (f"its score was computed with another model, preprocessing or protocol (encoder "
                      f"{record.get('fingerprint')}, now {fingerprint})")
    if data is not None and record.get("data_fingerprint") != data:
        return None, (f"its data changed since its score (dataset files or images: "
                      f"{record.get('data_fingerprint')}, now {data})")
    return float(record["score"] if "score" in record else record["precision_at_1"]), ""


def _metric_fields(result: DatasetResult) -> dict[str, object]:
    """The score file's metric entries: Precision@1 and hits for rows, NDCG@5 and hit@1 for a corpus."""
    predictions = result.predictions
    if isinstance(predictions, Rankings):
        return {f"ndcg_linear@{predictions.k}": predictions.score(f"ndcg@{predictions.k}"),
                "hit@1": predictions.score("hit@1")}
    return {"precision_at_1": result.score, "correct": int(predictions.correct.sum())}


def _write_dataset(out_dir: Path, result: DatasetResult, info: DatasetInfo, benchmark: Benchmark,
                   fingerprint: str, dataset: EvalDataset | CorpusDataset, protocol: dict[str, Any] | None,
                   data: str, hashes: FileHashes) -> None:
    """Write predictions, then the score file (its presence marks the dataset as finished)."""
    source, skipped = dataset.source, getattr(dataset, "skipped", 0)
    records = (result.predictions.records(dataset.doc_ids) if isinstance(result.predictions, Rankings)
               else result.predictions.records())
    files.write_jsonl(out_dir / f"{result.name}_pred.jsonl", records)
    files.write_json(score_path(out_dir, result.name), {
        "dataset": result.name, "benchmark": benchmark.name if benchmark.get(result.name) else None,
        "meta_task": info.meta_task, "split": info.split, "metric": result.metric, "score": result.score,
        **_metric_fields(result),
        "n_queries": len(result.predictions), "unique_items": result.unique_items,
        "encoded": result.encoded, "cache_hits": result.cache_hits,
        "skipped_rows": skipped, "seconds": round(result.seconds, 3), "fingerprint": fingerprint,
        "data_fingerprint": data, "data_files": file_record(dataset, hashes), "protocol": protocol,
        "source": source,
    })


def _current_scores(out_dir: Path, names: Sequence[str], fingerprint: str, hashes: FileHashes,
                    checked: set[str], failed: Mapping[str, str]) -> tuple[dict[str, float], dict[str, str]]:
    """Scores of ``names`` stored in ``out_dir`` for this encoder that still hold: those checked against
    their current data in this run, and the others whose recorded data files are unchanged; the
    rest is stale (name -> why), and a failed dataset's old score never counts."""
    scores: dict[str, float] = {}
    stale: dict[str, str] = {}
    for name in names:
        if name in failed or (score := read_score(out_dir, name, fingerprint)) is None:
            continue
        if name not in checked:
            record = json.loads(score_path(out_dir, name).read_text(encoding="utf-8"))
            if (why := stale_reason(record, hashes)) is not None:
                stale[name] = why
                continue
        scores[name] = score
    return scores, stale


def _evaluate_one(encoder: ItemEncoder, info: DatasetInfo, chosen: Plan, data_dir: Path, image_root: Path | None,
                  out_dir: Path, fingerprint: str, cache: EmbeddingCache, hashes: FileHashes, skip_bad: bool,
                  batch_size: int, show_progress: bool, allow_outside_paths: bool,
                  ) -> tuple[DatasetResult | None, EvalDataset | CorpusDataset, str]:
    """Read one dataset and score it, or find its stored score (``None`` for the result then)."""
    from cocoa.core.distributed import from_main, gather_objects, rank_and_world  # torch, imported late

    main = rank_and_world()[0] == 0
    error: DataError | None = None
    try:
        dataset = read_dataset(data_dir, info, image_root, instruction_format=chosen.formats.get(info.name),
                               skip_bad=skip_bad, allow_outside_paths=allow_outside_paths)
        data = dataset_fingerprint(dataset, hashes, skip_bad=skip_bad)
    except DataError as exc:
        error = exc
    said = [text for text in gather_objects(None if error is None else str(error)) if text is not None]
    if said:  # every rank gives the dataset up together, so their collectives stay in step
        raise error if error is not None else DataError(f"another rank could not read {info.name}: {said[0]}")
    score, why = from_main(stored_score(out_dir, info.name, fingerprint, data) if main else None)
    if main:
        hashes.save()
    if score is not None:
        return None, dataset, data
    if why and main:
        logger.warning("%s: evaluating again: %s", info.name, why)
    result = run_dataset(encoder, dataset, cache, batch_size=batch_size, show_progress=show_progress,
                         metric=info.metric, key=lambda item: content_key(item, hashes))
    return result, dataset, data


def evaluate(encoder: ItemEncoder, data_dir: Path, out_dir: Path, datasets: Sequence[str] | None = None,
             image_root: Path | None = None, batch_size: int = ENCODE_BATCH_SIZE, *, cache_dir: Path | None = None,
             skip_bad: bool = False, show_progress: bool = True, benchmark: str | None = None,
             allow_outside_paths: bool = False,
             dataset_info: Mapping[str, Card] | None = None) -> Summary:
    """Evaluate ``encoder`` on the datasets in ``data_dir``, writing results to ``out_dir``.

    The benchmark and the groups of datasets outside it come from :func:`cocoa.evaluate.plan.plan`
    (``benchmark`` names MMEB-V1 or MMEB-V2; ``dataset_info`` gives cards by dataset name).
    Datasets whose score file already holds this encoder's fingerprint and this dataset's data
    fingerprint are skipped, so an interrupted run resumes at the first unfinished one. The
    encoder fingerprint covers the weights, the model config, dtype and attention kernel, the
    tokenizer and image processor, and the embedding protocol; the data fingerprint the dataset's
    files and the content of its images (:mod:`cocoa.evaluate.freshness`). A score that does not
    match is computed again, with a warning saying why; cached embeddings are keyed by the
    encoder fingerprint and each image's content. The summary covers every dataset of
    the benchmark scored in ``out_dir`` with this fingerprint and is flagged incomplete when
    any is missing; datasets outside the benchmark are reported apart (``Summary.extra``).
    A dataset that cannot be read or scored for its data (a :class:`~cocoa.core.errors.DataError`: a
    missing folder, frames or column, a bad row) is not scored and goes to ``Summary.failed`` with
    its reason, on every rank at once; the run goes on with the next one, and an older score of it
    in ``out_dir`` does not count. Other errors (a model that fails on every input, an option that
    fits no dataset, a disk that cannot be read) end the run; what is finished stays and a rerun resumes.
    Media paths stay inside their roots unless ``allow_outside_paths`` (:mod:`cocoa.data.paths`).
    Embeddings are cached under ``cache_dir`` (default ``out_dir/cache``). Images resolve against
    ``image_root`` (default :func:`cocoa.data.published.default_image_root`: ``DATA/image-tasks``
    and ``DATA/visdoc-tasks`` in VLM2Vec's layout, else ``DATA/images`` if present, else ``DATA``).
    """
    from cocoa.core.distributed import from_main, gather_objects, rank_and_world  # torch, imported late

    data_dir, out_dir = Path(data_dir), Path(out_dir)
    rank, world = rank_and_world()
    main = rank == 0
    chosen = plan(data_dir, list_eval_datasets(data_dir), datasets, benchmark, dataset_info)
    fingerprint = encoder.fingerprint()
    if len(set(gather_objects(fingerprint))) > 1:
        raise ConfigError("the ranks loaded different models or protocols (their fingerprints differ)")
    cache = EmbeddingCache(cache_dir or out_dir / "cache", fingerprint, persist=main)
    out_dir.mkdir(parents=True, exist_ok=True)
    hashes = FileHashes(out_dir / HASHES_FILE)
    encoded = hits = 0
    evaluated: list[str] = []
    resumed: list[str] = []
    failed: dict[str, str] = {}
    for info in chosen.run:
        try:
            result, dataset, data = _evaluate_one(encoder, info, chosen, data_dir, image_root, out_dir,
                                                  fingerprint, cache, hashes, skip_bad, batch_size, show_progress,
                                                  allow_outside_paths)
        except DataError as exc:  # one task's data never ends the run: it is reported, the rest go on
            failed[info.name] = str(exc)
            if main:
                logger.error("%s: not scored: %s", info.name, exc)
            continue
        if result is None:
            resumed.append(info.name)
            continue
        if main:
            _write_dataset(out_dir, result, info, chosen.benchmark, fingerprint, dataset, protocol_record(encoder),
                           data, hashes)
        encoded, hits = encoded + result.encoded, hits + result.cache_hits
        evaluated.append(info.name)
    summary = None
    if main:
        names = chosen.benchmark.names() + [info.name for info in chosen.extra]
        scores, stale = _current_scores(out_dir, names, fingerprint, hashes, set(evaluated) | set(resumed), failed)
        summary = summarize(chosen.benchmark, scores, fingerprint, chosen.extra)
        summary.encoded, summary.cache_hits, summary.evaluated, summary.resumed = encoded, hits, evaluated, resumed
        summary.protocol, summary.world_size, summary.failed = protocol_record(encoder), world, failed
        summary.stale = stale
        write_reports(summary, out_dir)
    return from_main(summary)
