"""Every setting of the embedding server with its default, written once: request limits and batching.

Light on purpose (no torch), so the command line takes its defaults from here too.
"""

from __future__ import annotations

from dataclasses import dataclass

from cocoa.data.images import MAX_IMAGE_PIXELS


@dataclass(frozen=True)
class ServerSettings:
    """Request limits (inputs per request, characters per text or instruction, image bytes and pixels, the
    pixels of a request's images together and the pixels a decoded image is kept at, body bytes) and the :class:`~cocoa.inference.batcher.Batcher`'s batching (items per model call,
    wait for requests still being preprocessed, preprocessing threads). How a batch is laid out (padded or
    packed rows) is the embedder's own setting (:data:`SERVE_PACK_TOKENS` for ``cocoa serve``)."""

    max_inputs: int = 256
    max_text_chars: int = 16_384
    max_image_bytes: int = 10_000_000
    max_image_pixels: int = MAX_IMAGE_PIXELS
    max_request_pixels: int = 128_000_000
    """Pixels the images of one request may have in all, read from their headers before any is decoded."""
    keep_pixels: int | None = None
    """Pixels an image is kept at once decoded (larger ones are decoded at a reduced scale); ``None``: four
    times the most the embedder's image policy feeds the vision tower."""
    max_body_bytes: int = 64_000_000
    light_chars: int = 4096
    """A request with no image and at most this many characters of text is preprocessed on the thread
    kept for cheap requests, never behind the decoding of large images."""
    max_batch: int = 64
    max_wait_ms: float = 5.0
    preprocess_threads: int = 2

    def image_bytes_bound(self, requests: int) -> int:
        """The most bytes of decoded images the server holds with ``requests`` requests in flight: one
        full-size decode (4 bytes a pixel) per preprocessing thread, plus each request's images as kept
        (3 bytes a pixel; an image over ``keep_pixels`` is kept at under four times it, and never at
        more pixels than its header's, which the request budget bounds). ``keep_pixels`` must be set."""
        if self.keep_pixels is None:
            raise ValueError("keep_pixels is not resolved yet (create_app sets it from the model)")
        kept = min(self.max_request_pixels, self.max_inputs * 4 * self.keep_pixels)
        return self.preprocess_threads * self.max_image_pixels * 4 + requests * kept * 3


DEFAULTS = ServerSettings()

#: Tokens per packed row of the model ``cocoa serve`` loads: requests of mixed lengths share rows, so no
#: compute goes to padding (``None`` pads).
SERVE_PACK_TOKENS: int | None = 512
