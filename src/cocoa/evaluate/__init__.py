"""MMEB evaluation: dataset registry, cached encoding, V1 scoring, reports."""

from cocoa.evaluate.registry import MMEB_V1, MMEB_V2, Benchmark, DatasetInfo, load_manifest, resolve_benchmark
from cocoa.evaluate.runner import ItemEncoder, evaluate
from cocoa.evaluate.summary import Summary, summarize

__all__ = ["MMEB_V1", "MMEB_V2", "Benchmark", "DatasetInfo", "ItemEncoder", "Summary", "evaluate", "load_manifest",
           "resolve_benchmark", "summarize"]
