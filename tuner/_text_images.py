"""Synthetic text images for the PP-OCR studies: dark glyph-like strokes in lines on light paper.

Drift on random noise says little about a text detector (its map is empty either way) or a
recogniser. These pages are not a real font: each "character" is a 7x5 bitmap of strokes drawn
from a seeded generator, set in words and lines at several sizes, dark on light with uneven
lighting and sensor noise. That is enough texture for the detector to fire on (text maps with
real regions, so IoU means something) and for the recogniser and classifier to produce confident
decisions. Everything is reproducible from ``seed``; nothing is read from disk or downloaded.

Used by the study files as ``function = "tuner._text_images:rendered_text_images"``.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

_GLYPH_ROWS, _GLYPH_COLS = 7, 5
_IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32).reshape(1, 3, 1, 1)
_IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32).reshape(1, 3, 1, 1)


def _glyph_bank(rng: np.random.Generator, count: int = 48) -> np.ndarray:
    """``count`` bitmaps of 7x5, each two to four strokes (bars, posts, diagonals)."""
    bank = np.zeros((count, _GLYPH_ROWS, _GLYPH_COLS), np.float32)
    for glyph in bank:
        for _ in range(rng.integers(2, 5)):
            kind = rng.integers(0, 3)
            if kind == 0:  # vertical post
                col = rng.integers(0, _GLYPH_COLS)
                top, bottom = sorted(rng.integers(0, _GLYPH_ROWS, size=2))
                glyph[top : bottom + 1, col] = 1
            elif kind == 1:  # horizontal bar
                row = rng.integers(0, _GLYPH_ROWS)
                left, right = sorted(rng.integers(0, _GLYPH_COLS, size=2))
                glyph[row, left : right + 1] = 1
            else:  # diagonal
                steps = np.arange(min(_GLYPH_ROWS, _GLYPH_COLS))
                glyph[steps, steps if rng.random() < 0.5 else _GLYPH_COLS - 1 - steps] = 1
    return bank


def _text_line(rng: np.random.Generator, bank: np.ndarray, n_chars: int) -> np.ndarray:
    """A 7-row bitmap of words: glyphs with one blank column between, three between words."""
    pieces = []
    for index in range(n_chars):
        if index and rng.random() < 0.18:
            pieces.append(np.zeros((_GLYPH_ROWS, 3), np.float32))
        pieces.append(bank[rng.integers(0, len(bank))])
        pieces.append(np.zeros((_GLYPH_ROWS, 1), np.float32))
    return np.concatenate(pieces, axis=1)


def _paste(image: np.ndarray, bitmap: np.ndarray, top: int, left: int, scale: int,
           ink: np.ndarray) -> None:
    """Draw ``bitmap`` (scaled by ``scale``) in ``ink`` onto ``image`` (3, H, W), clipped."""
    big = np.kron(bitmap, np.ones((scale, scale), np.float32))
    height = min(big.shape[0], image.shape[1] - top)
    width = min(big.shape[1], image.shape[2] - left)
    if height <= 0 or width <= 0:
        return
    mask = big[:height, :width] > 0
    region = image[:, top : top + height, left : left + width]
    region[:, mask] = ink[:, None]


def _page(rng: np.random.Generator, bank: np.ndarray, height: int, width: int,
          layout: str) -> np.ndarray:
    paper = rng.uniform(200, 250)
    image = np.full((3, height, width), paper, np.float32)
    image *= np.linspace(rng.uniform(0.85, 1.0), 1.0, width, dtype=np.float32)[None, None, :]
    if layout == "line":
        scale = max(1, int(height * rng.uniform(0.45, 0.7)) // _GLYPH_ROWS)
        n_chars = max(1, (width - 8) // (6 * scale))
        bitmap = _text_line(rng, bank, int(n_chars * rng.uniform(0.6, 1.0)))
        top = max(0, (height - _GLYPH_ROWS * scale) // 2 + int(rng.integers(-2, 3)))
        _paste(image, bitmap, top, int(rng.integers(2, 8)), scale, rng.uniform(0, 80, 3))
    else:
        top = int(rng.integers(8, 40))
        while top < height - 20:
            scale = int(rng.integers(2, 5))
            left = int(rng.integers(8, max(9, width // 4)))
            n_chars = int(rng.integers(4, max(5, (width - left) // (6 * scale))))
            _paste(image, _text_line(rng, bank, n_chars), top, left, scale, rng.uniform(0, 80, 3))
            top += _GLYPH_ROWS * scale + int(rng.integers(10, 60))
    image += rng.normal(0, 3, image.shape).astype(np.float32)
    return np.clip(image, 0, 255)


def rendered_text_images(
    *,
    batch: int,
    height: int,
    width: int,
    n_batches: int = 4,
    layout: Literal["page", "line"] = "page",
    seed: int = 0,
    input_name: str = "x",
    normalise: Literal["imagenet", "half"] | None = None,
) -> list[dict[str, np.ndarray]]:
    """``n_batches`` feeds ``{input_name: float32 (batch, 3, height, width)}``.

    ``layout``: ``page`` (several lines at several sizes, for the detector) or ``line`` (one
    line filling the height, for the recogniser and the orientation classifier). ``normalise``:
    ``imagenet`` ((x/255 - mean) / std, PP-OCR's detector) or ``half`` ((x/255 - 0.5) / 0.5, its
    recogniser and classifier); the default follows the layout.
    """
    if min(batch, height, width, n_batches) < 1:
        raise ValueError("batch, height, width and n_batches must all be >= 1")
    if layout not in ("page", "line"):
        raise ValueError(f"layout must be 'page' or 'line', got {layout!r}")
    normalise = normalise or ("imagenet" if layout == "page" else "half")
    rng = np.random.default_rng(seed)
    bank = _glyph_bank(rng)
    feeds = []
    for _ in range(n_batches):
        pixels = np.stack([_page(rng, bank, height, width, layout) for _ in range(batch)]) / 255.0
        if normalise == "imagenet":
            values = (pixels - _IMAGENET_MEAN) / _IMAGENET_STD
        elif normalise == "half":
            values = (pixels - 0.5) / 0.5
        else:
            raise ValueError(f"normalise must be 'imagenet' or 'half', got {normalise!r}")
        feeds.append({input_name: np.ascontiguousarray(values, dtype=np.float32)})
    return feeds
