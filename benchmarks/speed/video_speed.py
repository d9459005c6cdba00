"""Video reading and encoding speed (not a test): frames/s from frame folders and from files, clips/s encoded.

Writes ``--clips`` clips of ``--frames-saved`` noise frames at ``--side`` pixels, each as a
folder of JPEG frames (MMEB-V2's layout) and as an ``.mp4`` (PyAV, mpeg4), then times sampling
``--frames`` frames of every clip both ways (``read_frames``: what the collator calls), and the
tiny model encoding the clips (``BatchEncoder.encode_items``, preprocessing included).

    python benchmarks/speed/video_speed.py --clips 64 --frames-saved 64 --frames 8 --side 224
    python benchmarks/speed/video_speed.py --smoke     # 2 clips of 4 frames at 56x56, 2 sampled
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cocoa.core.protocol import VideoPolicy
from cocoa.core.spec import EmbeddingSpec
from cocoa.data.items import Item
from cocoa.data.videos import read_frames, write_video
from cocoa.inference.batch_encoder import BatchEncoder
from cocoa.model.backbone import Backbone


def write_clips(root: Path, clips: int, saved: int, side: int) -> list[tuple[str, str]]:
    """``(frame folder, mp4 file)`` of each clip."""
    rng = np.random.default_rng(0)
    out = []
    for n in range(clips):
        frames = [(rng.random((side, side, 3)) * 255).astype("uint8") for _ in range(saved)]
        folder = root / f"clip{n}"
        folder.mkdir()
        for i, frame in enumerate(frames):
            Image.fromarray(frame).save(folder / f"frame_{i + 1:04d}.jpg", quality=90)
        out.append((str(folder), str(write_video(root / f"clip{n}.mp4", frames, fps=8))))
    return out


def frames_per_second(sources: list[str], policy: VideoPolicy) -> float:
    start = time.perf_counter()
    count = sum(len(read_frames(source, policy).images) for source in sources)
    return count / (time.perf_counter() - start)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, help="default: 64; 2 with --smoke")
    parser.add_argument("--frames-saved", type=int, help="default: 64; 4 with --smoke")
    parser.add_argument("--frames", type=int, help="default: 8; 2 with --smoke")
    parser.add_argument("--side", type=int, help="default: 224; 56 with --smoke")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the usage above")
    args = parser.parse_args(argv)
    args.clips, args.frames_saved = args.clips or (2 if args.smoke else 64), args.frames_saved or (4 if args.smoke else 64)
    args.frames, args.side = args.frames or (2 if args.smoke else 8), args.side or (56 if args.smoke else 224)
    torch.set_num_threads(args.threads)
    policy = VideoPolicy(frames=args.frames)
    with tempfile.TemporaryDirectory() as tmp:
        clips = write_clips(Path(tmp), args.clips, args.frames_saved, args.side)
        folders, files = [c[0] for c in clips], [c[1] for c in clips]
        print(f"{args.clips} clips of {args.frames_saved} frames at {args.side}x{args.side}, {args.frames} sampled, "
              f"{args.threads} threads")
        print(f"| source | sampled frames/s |\n|---|---|\n| frame folders (JPEG) | "
              f"{frames_per_second(folders, policy):.0f} |\n| mp4 files (PyAV) | {frames_per_second(files, policy):.0f} |")
        backbone = Backbone.tiny("tiny")
        encoder = BatchEncoder(backbone, EmbeddingSpec(EmbeddingSpec().protocol.replace(video=policy)))
        items = [Item("<|video_1|> What happens in the video?", video=folder) for folder in folders]
        encoder.encode_items(items[:4], batch_size=4)
        start = time.perf_counter()
        encoder.encode_items(items, batch_size=8)
        seconds = time.perf_counter() - start
        print(f"tiny model, folders: {args.clips / seconds:.1f} clips/s ({args.clips * args.frames / seconds:.0f} "
              f"frames/s), {encoder.item_length(items[0])} tokens per clip")


if __name__ == "__main__":
    main()
