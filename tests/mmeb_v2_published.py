"""MMEB-V2 as it is published: the Hub repos' file trees and the archives' folders, a few rows each.

Every repo below is laid out with its real file and folder names and column types; the rows are
made up and small. ``SOURCES`` says where each layout comes from ("verbatim": seen on the Hub
page or in the script named; "inferred": the repo's files were not listed publicly, the layout
follows the loader that reads it and the repo it was copied from). VLM2Vec paths are of
github.com/TIGER-AI-Lab/VLM2Vec at 6e1e1d4.

:func:`fake_snapshot_download` serves these trees in place of ``huggingface_hub.snapshot_download``
(honouring ``allow_patterns`` / ``ignore_patterns`` as it does, with ``fnmatch``), so ``cocoa data
get`` runs offline end to end. :data:`EXPECTED` gives the queries and candidates each task must read as.
"""

from __future__ import annotations

import fnmatch
import io
import json
import tarfile
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image

from cocoa.data.mmeb_v2 import PUBLISHED, video_labels

VLM2VEC = "github.com/TIGER-AI-Lab/VLM2Vec@6e1e1d4"
SOURCES: dict[str, str] = {
    "TIGER-Lab/MMEB-V2": f"verbatim: archive names from the Hub commit listing; unpacking from {VLM2VEC} "
                         "experiments/public/data/download_data.sh (video_cls/video_ret with -C, video_mret and "
                         "video_qa holding their top folder, video_qa in parts 00-04, mmeb_v1.tar.gz holding MMEB/); "
                         "video_ret's nesting data/ziyan/video_retrieval/<task>/frames/ and Charades-STA's name as "
                         "found in the archives (MMEB-V2 discussion #9); frame names frame_%04d.jpg (cls, ret, mret) "
                         "and %04d.jpeg (qa) as VLM2Vec's extraction writes them",
    "ziyjiang/MMEB_Test_Instruct": f"inferred: one config per task, split test ({VLM2VEC} "
                                   "src/data/eval_dataset/image_*_dataset.py); <Task>/test-*.parquet as the sibling "
                                   "TIGER-Lab/MMEB-eval; columns qry_inst, qry_text, qry_img_path, tgt_inst, tgt_text, "
                                   "tgt_img_path (image_*_dataset.py); image paths relative to image-tasks/",
    "VLM2Vec/Kinetics-700": "verbatim: data/train.jsonl (Hub commits); test: data/test.jsonl inferred from "
                            "dataset_hf_path.py split test; columns video_id, pos_text (video_classification_dataset.py)",
    "VLM2Vec/SmthSmthV2": "verbatim: data/test.jsonl, data/train.jsonl (Hub); neg_text from ssv2_dataset.py",
    "VLM2Vec/HMDB51": "verbatim: data/train.jsonl (Hub); Hub parquet conversion default/train/0000.parquet; "
                      "data/test.jsonl inferred",
    "VLM2Vec/UCF101": "verbatim: data/train.jsonl (Hub); data/test.jsonl inferred",
    "VLM2Vec/Breakfast": "inferred: as the other VLM2Vec classification repos",
    "VLM2Vec/MVBench": "inferred: copy of OpenGVLab/MVBench (verbatim there: one config per sub-task, data_files "
                       "json/<task>.json, no split so 'train'); mvbench_dataset.py loads split train of each",
    "VLM2Vec/Video-MME": "inferred: copy of lmms-lab/Video-MME (verbatim: config videomme, videomme/test-*.parquet, "
                         "videoID/question/options/answer strings, options a list)",
    "VLM2Vec/NExTQA": "inferred: copy of lmms-lab/NExTQA (verbatim: MC/test-00000-of-00001.parquet); video ids and "
                      "answer as integers (nextqa_dataset.py casts with str())",
    "VLM2Vec/EgoSchema": "verbatim: Subset/test-00000-of-00001.parquet; columns as lmms-lab/egoschema's card "
                         "(question_idx, question, video_idx, option list, answer strings)",
    "VLM2Vec/ActivityNetQA": "verbatim: data/test-* with five string columns",
    "VLM2Vec/DiDeMo": "verbatim: didemo_test.json, didemo_train.json, raw_data/*.json, raw_videos/*.mp4 (Hub listing)",
    "VLM2Vec/MSR-VTT": "inferred: copy of friedrichor/MSR-VTT (verbatim there: config test_1k -> msrvtt_test_1k.json)",
    "VLM2Vec/MSVD": "verbatim: msvd_{train,val,test}.json, raw_data/, raw_videos/*.avi; configs default "
                    "train/validation/test; caption is a list",
    "VLM2Vec/VATEX": "inferred: as lmms-lab/VATEX (videoID string, enCap list of strings) in a default config",
    "lmms-lab/YouCook2": "inferred: data/val-*.parquet with id, sentence strings and segment float32 pair "
                         "(as VLM2Vec/YouCook2, verbatim there)",
    "VLM2Vec/QVHighlight": "inferred: test.jsonl with query, video_path (moment_retrieval_dataset.py)",
    "VLM2Vec/Charades-STA": "inferred: as VLM2Vec/QVHighlight",
    "VLM2Vec/MomentSeeker": "inferred: test.jsonl with query, input_frames, positive_frames, negative_frames "
                            "(momentseeker_dataset.py)",
    "vidore/*_beir": "verbatim (6 cards): configs corpus/queries/qrels -> <part>/test-*; corpus-id and query-id "
                     "int64, image struct, score float64 in arxivqa/shiftproject/synthetic*, int64 in "
                     "docvqa/infovqa/tabfquad; tatdqa and government_reports inferred the same",
    "vidore/*_v2": "inferred: the corpus config stored as docs/test-*.parquet (verbatim for biomedical_lectures_v2) "
                   "and named in the README's configs block; queries carry a language column",
    "openbmb/VisRAG-Ret-Test-*": "verbatim: corpus/, queries/, qrels/ with split train (corpus/train-00000-of-00003...), "
                                 "corpus-id a string such as 37313.jpeg",
    "VLM2Vec/ViDoSeek": "verbatim (card): configs corpus/queries/qrels, test; queries have corpus_range list<int64>",
    "VLM2Vec/*-page-fixed": "inferred: as VLM2Vec/ViDoSeek",
    "VLM2Vec/MMLongBench-doc": "verbatim: a root queries.jsonl; corpus/ and qrels/ parquet inferred",
}

ROWS = 2
IMAGE_CANDIDATES = 3
Tree = dict[str, bytes]


def _jpeg(seed: str, size: int = 28) -> bytes:
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    buffer = io.BytesIO()
    Image.fromarray((rng.random((size, size, 3)) * 255).astype("uint8")).save(buffer, format="JPEG")
    return buffer.getvalue()


def _png(seed: str) -> bytes:
    buffer = io.BytesIO()
    rng = np.random.default_rng(zlib.crc32(seed.encode()))
    Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(buffer, format="PNG")
    return buffer.getvalue()


def _parquet(columns: dict[str, list], schema: pa.Schema | None = None) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.table(columns, schema=schema), buffer)
    return buffer.getvalue()


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def _json(rows: list[dict]) -> bytes:
    return json.dumps(rows).encode()


def _readme(configs: dict[str, dict[str, str]]) -> bytes:
    lines = ["---", "configs:"]
    for name, splits in configs.items():
        lines += [f"- config_name: {name}", "  data_files:"]
        lines += [f"  - split: {split}\n    path: {path}" for split, path in splits.items()]
    return ("\n".join(lines) + "\n---\n# dataset card\n").encode()


def tar_gz(members: Tree) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


# --- image tasks ---------------------------------------------------------------------------

def _image_trees() -> tuple[Tree, Tree]:
    """The MMEB_Test_Instruct tree, and the members of mmeb_v1.tar.gz (its images)."""
    repo: Tree = {}
    images: Tree = {}
    configs = {}
    for task in (t for t in PUBLISHED.values() if t.modality == "image"):
        rows: dict[str, list] = {k: [] for k in ("qry_inst", "qry_text", "qry_img_path", "tgt_inst", "tgt_text",
                                                  "tgt_img_path")}
        for r in range(ROWS):
            query = f"images/{task.name}/q{r}.jpg"
            targets = [f"images/{task.name}/t{r}_{j}.jpg" for j in range(IMAGE_CANDIDATES)]
            for path in (query, *targets):
                images[f"MMEB/{path}"] = _jpeg(path)
            rows["qry_inst"].append("<|image_1|> Represent the given image for the task:")
            rows["qry_text"].append(f"query {r} of {task.name}")
            rows["qry_img_path"].append(query)
            rows["tgt_inst"].append("Represent the given image:")
            rows["tgt_text"].append([f"answer {r}.{j}" for j in range(IMAGE_CANDIDATES)])
            rows["tgt_img_path"].append(targets)
        repo[f"{task.name}/test-00000-of-00001.parquet"] = _parquet(rows)
        configs[task.name] = {"test": f"{task.name}/test-*"}
    repo["README.md"] = _readme(configs)
    return repo, images


# --- video tasks ---------------------------------------------------------------------------

def _frames(folder: str, qa: bool = False) -> Tree:
    names = [f"{i:04d}.jpeg" if qa else f"frame_{i:04d}.jpg" for i in (1, 2)]
    return {f"{folder}/{n}": _jpeg(f"{folder}/{n}") for n in names}


def _video_trees() -> tuple[dict[str, Tree], dict[str, Tree]]:
    """The video annotation repos, and the members of each frame archive (``video_cls``, ...)."""
    repos: dict[str, Tree] = {}
    cls: Tree = {}
    ret: Tree = {}
    mret: Tree = {}
    qa: Tree = {}
    labels = video_labels()
    for task, folder in (("K700", "K700"), ("HMDB51", "HMDB51"), ("UCF101", "UCF101"), ("Breakfast", "Breakfast")):
        rows = [{"video_id": f"{task.lower()}_{r}", "pos_text": labels[task][r]} for r in range(ROWS)]
        for row in rows:
            cls |= _frames(f"{folder}/{row['video_id']}")
        repos[PUBLISHED[task].repo] = {"README.md": _readme({"default": {"train": "data/train.jsonl",
                                                                          "test": "data/test.jsonl"}}),
                                       "data/test.jsonl": _jsonl(rows), "data/train.jsonl": _jsonl(rows[:1])}
    ssv2 = [{"video_id": str(1000 + r), "pos_text": "Pushing a cup", "neg_text": ["Dropping a cup", "Pushing a cup",
                                                                                   "Lifting a cup"]}
            for r in range(ROWS)]
    for row in ssv2:
        cls |= _frames(f"SSv2/{row['video_id']}")
    repos["VLM2Vec/SmthSmthV2"] = {"data/test.jsonl": _jsonl(ssv2), "data/train.jsonl": _jsonl(ssv2[:1])}

    def retrieval(task: str, ids: list[str]) -> None:
        for vid in ids:
            ret.update(_frames(f"data/ziyan/video_retrieval/{task}/frames/{vid}"))

    msrvtt = [{"video_id": f"video{7010 + r}", "video": f"video{7010 + r}.mp4", "caption": f"scene {r}"}
              for r in range(ROWS)]
    retrieval("MSR-VTT", [r["video_id"] for r in msrvtt])
    repos["VLM2Vec/MSR-VTT"] = {"README.md": _readme({"train_9k": {"train": "msrvtt_train_9k.json"},
                                                      "test_1k": {"test": "msrvtt_test_1k.json"}}),
                                "msrvtt_test_1k.json": _json(msrvtt), "msrvtt_train_9k.json": _json(msrvtt[:1])}
    msvd = [{"video_id": f"-4wsuPCjDB{r}_5_15", "video": f"-4wsuPCjDB{r}_5_15.avi", "caption": [f"a man {r}", "b"]}
            for r in range(ROWS)]
    retrieval("MSVD", [r["video_id"] for r in msvd])
    repos["VLM2Vec/MSVD"] = {"README.md": _readme({"default": {"train": "msvd_train.json", "validation": "msvd_val.json",
                                                               "test": "msvd_test.json"}}),
                             "msvd_test.json": _json(msvd), "msvd_train.json": _json(msvd[:1]),
                             "msvd_val.json": _json(msvd[:1]), "raw_data/test_list.txt": b"x\n",
                             "raw_videos/-4wsuPCjDB0_5_15.avi": b"not fetched"}
    didemo = [{"video": f"10015567@N08_365508429{r}_d8b58466fa.mp4", "caption": f"someone waves {r}"}
              for r in range(ROWS)]
    retrieval("DiDeMo", [r["video"].removesuffix(".mp4") for r in didemo])
    repos["VLM2Vec/DiDeMo"] = {"README.md": _readme({"default": {"train": "didemo_train.json",
                                                                 "test": "didemo_test.json"}}),
                               "didemo_test.json": _json(didemo), "didemo_train.json": _json(didemo[:1]),
                               "raw_data/didemo_test.json": _json(didemo), "raw_videos/x.mp4": b"not fetched"}
    vatex = {"videoID": [f"vx{r}_000010_000020" for r in range(ROWS)],
             "enCap": [[f"a person does {r}", "another"] for r in range(ROWS)]}
    retrieval("VATEX", vatex["videoID"])
    repos["VLM2Vec/VATEX"] = {"data/test-00000-of-00001.parquet": _parquet(vatex)}
    youcook = {"id": [f"yc{r}" for r in range(ROWS)], "sentence": [f"add salt {r}" for r in range(ROWS)],
               "segment": [[1.0, 2.5] for _ in range(ROWS)]}
    retrieval("YouCook2", youcook["id"])
    youcook_schema = pa.schema([("id", pa.string()), ("sentence", pa.string()), ("segment", pa.list_(pa.float32()))])
    repos["lmms-lab/YouCook2"] = {"data/val-00000-of-00001.parquet": _parquet(youcook, youcook_schema),
                                  "data/test-00000-of-00001.parquet": _parquet(  # not the split VLM2Vec-V2 reads
                                      {k: v * 3 for k, v in youcook.items()}, youcook_schema)}

    for task, folder in (("QVHighlight", "QVHighlight"), ("Charades-STA", "Charades-STA")):
        rows = [{"query": f"a man cooks {r}", "video_path": f"videos/{task}_{r}.mp4"} for r in range(ROWS)]
        for r in range(ROWS):
            for clip in ("query", "positive_1", "negative_1", "negative_2"):
                mret |= _frames(f"video_mret/{folder}/{task}_{r}/{clip}")
        repos[PUBLISHED[task].repo] = {"test.jsonl": _jsonl(rows)}
    seeker = [{"query": "the car stops", "input_frames": "clip/x.mp4",
               "positive_frames": [{"output_path": "movie/a.mp4"}], "negative_frames": [{"output_path": "movie/b.mp4"}]},
              {"query": "a red thing", "input_frames": "pic.jpg", "positive_frames": [{"output_path": "movie/b.mp4"}],
               "negative_frames": [{"output_path": "movie/a.mp4"}, {"output_path": "movie/c.mp4"}]}]
    for clip in ("clip_x", "movie_a", "movie_b", "movie_c"):
        mret |= _frames(f"video_mret/MomentSeeker/video_frames/{clip}")
    mret["video_mret/MomentSeeker/query_pic.jpg"] = _jpeg("pic")
    repos["VLM2Vec/MomentSeeker"] = {"test.jsonl": _jsonl(seeker)}

    videomme = {"videoID": [f"fFjv93ACGo{r}" for r in range(ROWS)], "question": [f"What color {r}?" for r in range(ROWS)],
                "options": [["A. Red.", "B. Blue.", "C. Green.", "D. White."]] * ROWS, "answer": ["B", "C"],
                "video_id": ["001", "002"], "duration": ["short"] * ROWS}
    for vid in videomme["videoID"]:
        qa |= _frames(f"video_qa/Video-MME/{vid}", qa=True)
    repos["VLM2Vec/Video-MME"] = {"README.md": _readme({"videomme": {"test": "videomme/test-*"}}),
                                  "videomme/test-00000-of-00001.parquet": _parquet(videomme)}
    nextqa = {"video": [4010069381 + r for r in range(ROWS)], "question": [f"why {r}" for r in range(ROWS)],
              "answer": [2, 0], "qid": [r for r in range(ROWS)], "type": ["CW"] * ROWS,
              **{f"a{i}": [f"option {i}"] * ROWS for i in range(5)}}
    for vid in nextqa["video"]:
        qa |= _frames(f"video_qa/NExTQA/{vid}", qa=True)
    repos["VLM2Vec/NExTQA"] = {"README.md": _readme({"MC": {"test": "MC/test-*"}, "OE": {"test": "OE/test-*"}}),
                               "MC/test-00000-of-00001.parquet": _parquet(nextqa),
                               "OE/test-00000-of-00001.parquet": _parquet({"video": [1], "question": ["q"],
                                                                           "answer": ["a"]})}
    ego = {"question_idx": [str(r) for r in range(ROWS)], "question": [f"What is C doing {r}?" for r in range(ROWS)],
           "video_idx": [f"ego-{r}" for r in range(ROWS)],
           "option": [["A. cooking.", "B. cleaning", "C. reading", "D. x", "E. y"]] * ROWS, "answer": ["1", "3"]}
    for vid in ego["video_idx"]:
        qa |= _frames(f"video_qa/EgoSchema/{vid}", qa=True)
    repos["VLM2Vec/EgoSchema"] = {"Subset/test-00000-of-00001.parquet": _parquet(ego),
                                  "MC/test-00000-of-00001.parquet": _parquet(ego)}
    anet = {"video_name": [f"anet{r}" for r in range(ROWS)], "question": [f"is it outdoors {r}" for r in range(ROWS)],
            "answer": ["no", "yes"], "question_id": ["a", "b"], "type": ["3", "3"]}
    for vid in anet["video_name"]:
        qa |= _frames(f"video_qa/ActivityNetQA/v_{vid}", qa=True)
    repos["VLM2Vec/ActivityNetQA"] = {"data/test-00000-of-00001.parquet": _parquet(anet)}
    mv_configs = {}
    mvbench: Tree = {}
    for sub in ("action_antonym", "fine_grained_action"):
        rows = [{"video": f"{sub}_{r}.mp4", "question": f"What happens {r}?", "candidates": ["sat", "stood", "ran"],
                 "answer": "stood"} for r in range(ROWS)]
        for row in rows:
            qa |= _frames(f"video_qa/MVBench/{sub}/{row['video']}", qa=True)
        mvbench[f"json/{sub}.json"] = _json(rows)
        mv_configs[sub] = {"train": f"json/{sub}.json"}
    repos["VLM2Vec/MVBench"] = {"README.md": _readme(mv_configs), **mvbench, "video/clevrer.zip": b"not fetched"}
    return repos, {"video_cls": cls, "video_ret": ret, "video_mret": mret, "video_qa": qa}


# --- visual-document tasks -----------------------------------------------------------------

IMAGE_STRUCT = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
PAGES = 3


def _visdoc_tree(task: str, repo: str, split: str) -> Tree:
    visrag = repo.startswith("openbmb/")
    ids: list = [f"{37313 + i}.jpeg" for i in range(PAGES)] if visrag else list(range(PAGES))
    score_type = pa.float64() if "arxivqa_test" in repo or "synthetic" in repo or "shift" in repo else pa.int64()
    id_type = pa.string() if visrag else pa.int64()
    corpus = _parquet({"corpus-id": ids, "image": [{"bytes": _png(f"{task}/{i}"), "path": None} for i in ids]},
                      pa.schema([("corpus-id", id_type), ("image", IMAGE_STRUCT)]))
    queries_rows = {"query-id": [0, 1] if not visrag else ["q0", "q1"], "query": [f"{task} page one?", "page two?"]}
    qrels = _parquet({"query-id": queries_rows["query-id"], "corpus-id": ids[:2], "score": [1, 2]},
                     pa.schema([("query-id", id_type), ("corpus-id", id_type), ("score", score_type)]))
    corpus_folder = "docs" if repo.endswith("_v2") else "corpus"
    tree = {f"{corpus_folder}/{split}-00000-of-00001.parquet": corpus, f"qrels/{split}-00000-of-00001.parquet": qrels}
    if repo == "VLM2Vec/MMLongBench-doc":
        tree["queries.jsonl"] = _jsonl([{"query-id": q, "query": t} for q, t in zip(*queries_rows.values(), strict=True)])
        return tree
    extra = {"language": ["english", "french"]} if repo.endswith("_v2") else {}
    extra |= {"corpus_range": [[0, 2], [0, 2]]} if "ViDoSeek" in repo else {}
    tree[f"queries/{split}-00000-of-00001.parquet"] = _parquet({**queries_rows, **extra})
    tree["README.md"] = _readme({"corpus": {split: f"{corpus_folder}/{split}-*"}, "queries": {split: f"queries/{split}-*"},
                                 "qrels": {split: f"qrels/{split}-*"}})
    return tree


# --- everything ------------------------------------------------------------------------------

def hub_trees() -> dict[str, Tree]:
    """Every repo of MMEB-V2 as published, by repo id."""
    image_repo, images = _image_trees()
    repos, frame_archives = _video_trees()
    qa = tar_gz(frame_archives["video_qa"])
    size = len(qa) // 5 + 1
    v2: Tree = {"README.md": b"---\nviewer: false\n---\n# MMEB-V2\n",
                "image-tasks/mmeb_v1.tar.gz": tar_gz(images),
                "video-tasks/frames/video_cls.tar.gz": tar_gz(frame_archives["video_cls"]),
                "video-tasks/frames/video_ret.tar.gz": tar_gz(frame_archives["video_ret"]),
                "video-tasks/frames/video_mret.tar.gz": tar_gz(frame_archives["video_mret"]),
                **{f"video-tasks/frames/video_qa.tar.gz-0{p}": qa[p * size:(p + 1) * size] for p in range(5)},
                "visdoc-tasks/visdoc-tasks.data.tar.gz": b"not fetched by cocoa data get",
                "visdoc-tasks/visdoc-tasks.images.tar.gz": b"not fetched by cocoa data get"}
    trees = {"TIGER-Lab/MMEB-V2": v2, "ziyjiang/MMEB_Test_Instruct": image_repo, **repos}
    for task in (t for t in PUBLISHED.values() if t.modality == "visdoc"):
        trees[task.repo] = _visdoc_tree(task.name, task.repo, task.split)
    return trees


def _expected() -> dict[str, tuple[int, int]]:
    """(queries, candidates) each task reads as: candidate slots of local rows, or the corpus size."""
    counts = {}
    for task in PUBLISHED.values():
        if task.modality == "image":
            counts[task.name] = (ROWS, ROWS * IMAGE_CANDIDATES)
        elif task.modality == "visdoc":
            counts[task.name] = (2, PAGES)
    labels = video_labels()
    counts |= {name: (ROWS, len(labels[name])) for name in ("K700", "HMDB51", "UCF101", "Breakfast")}
    counts |= {"SmthSmthV2": (ROWS, ROWS * 3), "MVBench": (2 * ROWS, 2 * ROWS * 3), "Video-MME": (ROWS, ROWS * 4),
               "NExTQA": (ROWS, ROWS * 5), "EgoSchema": (ROWS, ROWS * 5), "ActivityNetQA": (ROWS, ROWS * 2),
               "QVHighlight": (ROWS, ROWS * 3), "Charades-STA": (ROWS, ROWS * 3), "MomentSeeker": (2, 2 + 3)}
    counts |= {name: (ROWS, ROWS) for name in ("DiDeMo", "MSR-VTT", "MSVD", "VATEX", "YouCook2")}
    return counts


EXPECTED = _expected()


def fake_snapshot_download(trees: dict[str, Tree], calls: list[dict] | None = None) -> Callable[..., str]:
    """A ``snapshot_download`` that writes ``trees[repo_id]`` into ``local_dir``, filtered as the Hub client filters."""

    def download(*, repo_id: str, repo_type: str, local_dir: str, revision: str | None = None,
                 allow_patterns: list[str] | None = None, ignore_patterns: list[str] | None = None) -> str:
        assert repo_type == "dataset", repo_type
        if calls is not None:
            calls.append({"repo_id": repo_id, "local_dir": local_dir, "allow_patterns": allow_patterns})
        for path, data in trees[repo_id].items():
            if allow_patterns is not None and not any(fnmatch.fnmatch(path, p) for p in allow_patterns):
                continue
            if ignore_patterns is not None and any(fnmatch.fnmatch(path, p) for p in ignore_patterns):
                continue
            target = Path(local_dir) / path
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return local_dir

    return download
