"""Preprocessing rate without a model: tokenise, process 448x448 images and collate (not a test).

The bound on encoding throughput when preprocessing runs in the main process, as in
``BatchEncoder.encode_items``; compare with the encode rate of ``benchmarks/gpu/gpu_check.py``.

    python benchmarks/speed/preprocess_speed.py --items 256 --threads 1
    python benchmarks/speed/preprocess_speed.py --smoke     # 8 items of 56x56, batches of 4
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image

from cocoa.data.collate import Preprocessor, collate
from cocoa.data.items import Item
from cocoa.model.backbone import Backbone, build_image_processor


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--items", type=int, help="half images, half texts (default: 256; 8 with --smoke)")
    parser.add_argument("--side", type=int, help="default: 448; 56 with --smoke")
    parser.add_argument("--batch", type=int, help="default: 64; 4 with --smoke")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the usage above")
    args = parser.parse_args(argv)
    args.items, args.side = args.items or (8 if args.smoke else 256), args.side or (56 if args.smoke else 448)
    args.batch = args.batch or (4 if args.smoke else 64)
    torch.set_num_threads(args.threads)
    tiny = Backbone.tiny("tiny")
    backbone = Backbone(model=tiny.model, tokenizer=tiny.tokenizer, ids=tiny.ids,
                        image_processor=build_image_processor(args.side**2, args.side**2))
    pre = Preprocessor(backbone)
    rng = np.random.default_rng(2)
    half = args.items // 2
    items = [Item("<|image_1|> Represent the given image.",
                  Image.fromarray((rng.random((args.side, args.side, 3)) * 255).astype("uint8"))) for _ in range(half)]
    items += [Item(f"a short caption number {i} about a dress") for i in range(args.items - half)]
    began = time.perf_counter()
    for start in range(0, len(items), args.batch):
        collate([pre.embedding_sequence(item) for item in items[start:start + args.batch]], backbone.ids.pad)
    seconds = time.perf_counter() - began
    print(f"preprocess + collate {len(items)} items ({half} images of {args.side}x{args.side}), "
          f"{args.threads} thread(s): {seconds:.2f} s, {len(items) / seconds:.1f} items/s")


if __name__ == "__main__":
    main()
