"""cocoa.data.minimmeb.pools: colour tinting of Fashion-MNIST items."""

from __future__ import annotations

import numpy as np
from PIL import Image

from cocoa.data.minimmeb.pools import tint


def test_tint():
    item = Image.fromarray(np.array([[255, 0], [128, 255]], dtype=np.uint8), mode="L").convert("RGB")
    pixels = np.asarray(tint(item, (200, 30, 30)))
    assert pixels[0, 0].tolist() == [255, 255, 255] and pixels[0, 1].tolist() == [200, 30, 30]
    assert pixels[1, 0].tolist() == [round(255 - 127 / 255 * 55), round(255 - 127 / 255 * 225),
                                      round(255 - 127 / 255 * 225)]
