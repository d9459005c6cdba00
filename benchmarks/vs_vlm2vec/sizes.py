"""Image-token counts of cocoa's VLM2Vec presets against the reference code's own functions.

For a grid of image sizes, the reference side (VLM2Vec's venv from ``setup.sh``; for v2 a venv of
its own with transformers 4.52.3, made on the first run) resizes a real
image with VLM2Vec v1's ``process_image`` (``src/dataset.py`` at the pinned commit) and runs the
result through transformers 4.46.3's ``Qwen2VLImageProcessor`` with a Qwen2-VL-Instruct
checkpoint's bounds (3136 to 12845056 pixels); for v2 it runs the image processor vendored on
VLM2Vec's ``main`` branch with v2's defaults (3136 to 1003520), after v2's ``processor.py`` rule
for sides under 28 pixels. cocoa's side computes the same with the presets' image policies and
with its preprocessor on the same images. Prints every size where a count differs, and the totals.

    benchmarks/vs_vlm2vec/setup.sh
    python benchmarks/vs_vlm2vec/sizes.py
    python benchmarks/vs_vlm2vec/sizes.py --smoke [--work DIR]

``--smoke`` checks the sides in :data:`SMOKE_SIDES` only; where VLM2Vec is not set up under ``--work``
it compares cocoa's policies with its preprocessor alone (no reference counts).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from PIL import Image
from run import REPO, vlm2vec_ready

from cocoa.core.protocol import PROTOCOLS
from cocoa.data.collate import Preprocessor
from cocoa.model.backbone import Backbone, build_image_processor

SIDES = (20, 27, 28, 56, 100, 224, 333, 448, 672, 1000, 1344, 1700, 2200)
SMOKE_SIDES = (20, 28, 333, 2200)
V2_PROCESSOR = "src/model/vlm_backbone/qwen2_vl/image_processing_qwen2_vl.py"

#: Run in VLM2Vec's venv (transformers 4.46.3), in its v1 source folder.
REFERENCE_V1 = r'''
import json, sys
import numpy as np
from PIL import Image
from transformers import Qwen2VLImageProcessor
from src.dataset import process_image

processor = Qwen2VLImageProcessor(min_pixels=3136, max_pixels=12845056)
out = {}
for w, h in json.loads(sys.argv[1]):
    image = Image.fromarray(np.random.default_rng(w * 10000 + h).integers(0, 255, (h, w, 3), dtype=np.uint8))
    for res in ("low", "mid", "high"):
        grid = processor(images=[process_image(image, res)], return_tensors="np")["image_grid_thw"][0]
        out[f"{w}x{h} vlm2vec-v1-{res}"] = int(grid.prod()) // 4
print(json.dumps(out))
'''
#: Run with transformers 4.52.3 (v2's pin) on the image processor vendored on VLM2Vec's main branch.
REFERENCE_V2 = r'''
import importlib.util, json, sys
import numpy as np
from PIL import Image

spec = importlib.util.spec_from_file_location("v2_processor", sys.argv[2])
v2 = importlib.util.module_from_spec(spec)
spec.loader.exec_module(v2)
processor = v2.Qwen2VLImageProcessor(min_pixels=3136, max_pixels=1003520)
out = {}
for w, h in json.loads(sys.argv[1]):
    image = Image.fromarray(np.random.default_rng(w * 10000 + h).integers(0, 255, (h, w, 3), dtype=np.uint8))
    if image.size[0] < 28 or image.size[1] < 28:  # src/model/processor.py's rule for the rare small image
        image = image.resize((56, 56))
    out[f"{w}x{h} vlm2vec-v2"] = int(processor(images=[image], return_tensors="np")["image_grid_thw"][0].prod()) // 4
print(json.dumps(out))
'''


def reference_counts(python: Path, script: str, args: list[str], cwd: Path) -> dict[str, int]:
    """The JSON a reference script prints, or an exit with its error."""
    result = subprocess.run([str(python), "-c", script, *args], capture_output=True, text=True, cwd=cwd,
                            env={**os.environ, "PYTHONPATH": str(cwd)})
    if result.returncode != 0:
        raise SystemExit(f"the reference side failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def references(work: Path, sizes: list[tuple[int, int]]) -> dict[str, int]:
    """The reference image-token count of every size and preset (VLM2Vec v1's venv; v2's, made on first use)."""
    src, venv = work / "VLM2Vec", work / "venv"
    v2_venv = work / "venv-v2"
    if not (v2_venv / "bin" / "python").is_file():
        subprocess.run(["python3", "-m", "venv", str(v2_venv)], check=True)
        subprocess.run([str(v2_venv / "bin" / "pip"), "install", "-q", "transformers==4.52.3", "pillow", "numpy"],
                       check=True)
    v2_source = subprocess.run(["git", "-C", str(src), "show", f"origin/main:{V2_PROCESSOR}"], check=True,
                               capture_output=True, text=True).stdout
    grid = json.dumps(sizes)
    reference = reference_counts(venv / "bin" / "python", REFERENCE_V1, [grid], src)
    with tempfile.TemporaryDirectory() as tmp:
        v2_file = Path(tmp) / "image_processing_qwen2_vl.py"
        v2_file.write_text(v2_source)
        reference |= reference_counts(v2_venv / "bin" / "python", REFERENCE_V2, [grid, str(v2_file)], Path(tmp))
    return reference


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=REPO / "runs" / "vs_vlm2vec")
    parser.add_argument("--smoke", action="store_true", help="seconds long: see the module's doc")
    args = parser.parse_args(argv)
    sides = SMOKE_SIDES if args.smoke else SIDES
    sizes = [(w, h) for w in sides for h in sides]
    reference: dict[str, int] | None = None
    if vlm2vec_ready(args.work):
        reference = references(args.work, sizes)
    elif args.smoke:
        print(f"VLM2Vec is not set up under {args.work}: cocoa's policies against its preprocessor only")
    else:
        raise SystemExit(f"VLM2Vec is not set up under {args.work}: run benchmarks/vs_vlm2vec/setup.sh {args.work}")
    processor = build_image_processor(min_pixels=3136, max_pixels=12845056)
    backbone = Backbone.tiny("tiny", "qwen2_vl")
    backbone.image_processor = processor
    names = ["vlm2vec-v1-low", "vlm2vec-v1-mid", "vlm2vec-v1-high", "vlm2vec-v2"]
    preprocessors = {name: Preprocessor(backbone, 1 << 20, PROTOCOLS[name]) for name in names}
    checked = differ = 0
    for w, h in sizes:
        image = Image.new("RGB", (w, h), (120, 30, 200))
        for name in names:
            policy = PROTOCOLS[name].image.tokens(w, h, processor)
            grid = preprocessors[name].pixels(image)["image_grid_thw"][0]
            actual = int(grid.prod()) // 4
            want = policy if reference is None else reference[f"{w}x{h} {name}"]
            checked += 1
            if not policy == actual == want:
                differ += 1
                print(f"{w}x{h} {name}: reference {'-' if reference is None else want}, cocoa policy {policy}, "
                      f"cocoa preprocessor {actual}")
    what = ("the same count from policy and preprocessor" if reference is None
            else "the reference's image-token count")
    print(f"{checked - differ} of {checked} (size, preset) pairs give {what} "
          f"({len(sizes)} sizes, sides {sides[0]}-{sides[-1]} px)")


if __name__ == "__main__":
    main()
