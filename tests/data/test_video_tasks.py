"""The MMEB-V2 video readers build each task's queries, candidates and gold as VLM2Vec-V2's loaders do."""

from __future__ import annotations

from pathlib import Path

import pytest

from cocoa.core.errors import DataError
from cocoa.data.eval_sets import LoadedEvalDataset
from cocoa.data.items import IMAGE_PLACEHOLDER, VIDEO_PLACEHOLDER, EveryFrame, Item
from cocoa.data.mmeb_v2 import video_labels
from cocoa.data.video_tasks import QA_PROMPT, VIDEO_TARGET, VIDEO_TASKS, qa_options, read_video_task
from cocoa.data.visdoc import CorpusDataset
from tests.helpers import frame_root, video_frames, video_table

V = VIDEO_PLACEHOLDER


def read(root: Path, name: str) -> LoadedEvalDataset | CorpusDataset:
    return read_video_task(root / name, VIDEO_TASKS[name], root)


def local_rows(dataset: LoadedEvalDataset) -> list[tuple[Item, list[Item], int]]:
    assert dataset.golds is not None
    return [(row.query, list(row.candidates), int(g)) for row, g in zip(dataset.rows, dataset.golds, strict=True)]


def test_classification_ranks_every_label_with_the_task_instruction(snapshot: Path) -> None:
    data = read(snapshot, "K700")
    assert isinstance(data, CorpusDataset)
    labels = [data.items[i].text for i in data.corpus]
    built_in = video_labels()["K700"]
    assert len(built_in) == 700 and "abseiling" in built_in
    assert labels[:2] == ["abseiling", "juggling"]  # rows' labels first, then VLM2Vec-V2's list
    assert set(labels) == {"abseiling", "juggling", *built_in} and len(labels) == len(set(labels))
    queries = [data.items[i] for i in data.queries]
    assert queries[0].text == f"{V} Recognize the category of the video content."
    assert queries[0].video == str(frame_root(snapshot, "K700") / "v1")
    assert data.rel_doc.tolist() == [0, 1, 0]


def test_ssv2_uses_each_rows_own_candidates_and_counts_a_missing_gold_as_a_miss(snapshot: Path) -> None:
    rows = local_rows(read(snapshot, "SmthSmthV2"))
    assert [c.text for c in rows[0][1]] == ["Pushing a cup", "Dropping a cup"] and rows[0][2] == 1
    assert [c.text for c in rows[1][1]] == ["Dropping a cup", "Pushing a cup"] and rows[1][2] == 0


def test_retrieval_ranks_every_video_of_the_subset_for_a_text_query(snapshot: Path) -> None:
    data = read(snapshot, "MSR-VTT")
    assert isinstance(data, CorpusDataset) and len(data.queries) == 2  # the test_1k subset only
    assert data.items[data.queries[0]] == Item("Find a video that contains the following visual content: a dog runs")
    assert [data.items[i] for i in data.corpus] == [
        Item(f"{V} {VIDEO_TARGET}", video=str(frame_root(snapshot, "MSR-VTT") / v)) for v in ("m1", "m2")]
    didemo = read(snapshot, "DiDeMo")
    assert didemo.items[didemo.corpus[0]].video == str(frame_root(snapshot, "DiDeMo") / "d1")


def test_moment_retrieval_ranks_the_clips_of_the_querys_video(snapshot: Path) -> None:
    [(query, candidates, golds)] = local_rows(read(snapshot, "QVHighlight"))
    clips = frame_root(snapshot, "QVHighlight") / "q1"
    assert query == Item(f"{V} Find the clip that corresponds to the described scene in the given video: a man cooks",
                         video=str(clips / "query"))
    assert [c.video for c in candidates] == [str(clips / n) for n in ("positive_3", "negative_1", "negative_2")]
    assert golds == 1 and {c.text for c in candidates} == {f"{V} {VIDEO_TARGET}"}


def test_momentseeker_queries_are_video_image_or_text_and_every_positive_counts(snapshot: Path) -> None:
    rows = local_rows(read(snapshot, "MomentSeeker"))
    root = frame_root(snapshot, "MomentSeeker")
    video, image, text = (row[0] for row in rows)
    assert video == Item(f"{V} Find the clip that corresponds to the given sentence and video segment: the car stops",
                         video=str(root / "video_frames" / "clip_x"))
    assert image == Item(f"{IMAGE_PLACEHOLDER} Select the video clip that aligns with the given text and image: "
                         "a red thing", str(root / "query_pic.jpg"))
    assert text == Item("Find the clip that corresponds to the given text: someone sits")
    assert [(Path(c.video).name, g) for c in rows[0][1] for g in [rows[0][2]]] == [
        ("movie_a", 2), ("movie_b", 2), ("movie_c", 2)]
    assert rows[0][1][0].text == f"{V} Understand the content of the provided video clip."
    everything = [video.video, *(c.video for row in rows for c in row[1])]
    assert all(isinstance(v, EveryFrame) for v in everything), "read whole, as the reference's load_frames"


def test_qa_prompts_and_options_as_the_reference_writes_them(snapshot: Path) -> None:
    [(query, candidates, golds)] = local_rows(read(snapshot, "Video-MME"))
    assert query.text == (f"{V} {QA_PROMPT} What color is the car?\nA. Red.\nB. Blue\nC. Green.\nD. White")
    assert "Question:  What" in query.text  # the reference's double space
    assert [c.text for c in candidates] == ["Blue", "Red", "Green", "White"] and golds == 1
    [(query, candidates, _)] = local_rows(read(snapshot, "NExTQA"))
    assert query.text.endswith("why did the boy run\nOptions:\n(A) option 0\n(B) option 1\n(C) option 2\n"
                               "(D) option 3\n(E) option 4")
    assert candidates[0].text == "option 2"
    [(query, candidates, _)] = local_rows(read(snapshot, "EgoSchema"))
    assert query.text.endswith("What is C doing?A. cooking. B. cleaning C. reading")
    assert [c.text for c in candidates] == ["cleaning", "cooking", "reading"]
    rows = local_rows(read(snapshot, "MVBench"))
    assert [c.text for c in rows[0][1]] == ["(B) stood up", "(A) sat down"] and rows[0][2] == 1
    assert rows[1][2] == 0  # an answer outside the candidates is never hit, as in the reference
    assert rows[0][0].video == str(frame_root(snapshot, "MVBench") / "action_sequence" / "clip1.mp4")
    [(query, candidates, _)] = local_rows(read(snapshot, "ActivityNetQA"))
    assert query.text.endswith("is the person outdoors? (A) yes; (B) no.") and [c.text for c in candidates] == [
        "no", "yes"]
    assert qa_options("q", ["x"], "x") == ("q\nOptions:\n(A) x", ["(A) x"], 0)


def test_missing_frames_name_the_file_row_and_field(snapshot: Path, tmp_path: Path) -> None:
    root = tmp_path / "v2"
    video_frames(frame_root(root, "Video-MME") / "ok")
    video_table(root / "Video-MME" / "test.parquet", {
        "videoID": ["ok", "gone"], "question": ["q", "q"], "answer": ["A", "A"],
        "options": [["A. x", "B. y"], ["A. x", "B. y"]]})
    with pytest.raises(DataError, match="video frame folder not found") as caught:
        read(root, "Video-MME")
    assert caught.value.row == 1 and caught.value.field == "videoID" and "test.parquet" in str(caught.value)
    skipped = read_video_task(root / "Video-MME", VIDEO_TASKS["Video-MME"], root, skip_bad=True)
    assert len(skipped.queries) == 1 and skipped.skipped == 1
