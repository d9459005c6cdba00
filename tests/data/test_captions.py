"""cocoa.data.captions: caption corpora with their bad rows named or skipped."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from cocoa.core.errors import DataError
from cocoa.data.captions import read_caption_corpus


def test_caption_corpus_errors(tmp_path, images):
    path = tmp_path / "stage1.parquet"
    pq.write_table(pa.table({"image_path": ["a.png", "b.png", "missing.png"], "caption": ["red", "", "x"]}), path)
    with pytest.raises(DataError) as caught:
        read_caption_corpus(path, images)
    assert (caught.value.row, caught.value.field) == (1, "caption")
    corpus = read_caption_corpus(path, images, skip_bad=True)
    assert corpus.skipped == 2 and [pair.caption for pair in corpus] == ["red"]
