"""The model's view of an image: how LLaVA-1.6 ("anyres") cuts what was sent into 336×336 tiles.

The server picks one grid from ``image_grid_pinpoints`` (LLaVA-NeXT's ``select_best_resolution``),
resizes the image to fit it, pads the rest, cuts the grid into 336×336 tiles and adds a 336×336
overview of the whole image. :func:`render_model_view` draws exactly that: the overview, then the
padded grid with its tile lines and numbers (no words, so the picture needs no font or language).

Example:
    >>> anyres_plan(4032, 3024)
    AnyresPlan(grid=(672, 672), scaled=(672, 504), tiles=4)
"""

from __future__ import annotations

import io
from typing import NamedTuple

from PIL import Image, ImageDraw, ImageOps

from ..errors import ImageError
from ..i18n import _

__all__ = ["AnyresPlan", "TILE", "anyres_plan", "render_model_view", "model_view_png"]

#: The side of one tile and of the overview, in pixels.
TILE = 336
_PINPOINTS = ((336, 672), (672, 336), (672, 672), (1008, 336), (336, 1008))
_PAD = (40, 40, 40)
_GAP = 24
_LINE = (255, 214, 0)


class AnyresPlan(NamedTuple):
    """The grid the server picks (width, height), the size the image is scaled to inside it, and
    how many 336×336 tiles the grid has (the overview comes on top)."""

    grid: tuple[int, int]
    scaled: tuple[int, int]
    tiles: int


def anyres_plan(width: int, height: int) -> AnyresPlan:
    """The grid LLaVA-1.6 picks for an image of this size, and the size the image gets inside it.

    For each grid (pw, ph) the scale is ``min(pw/W, ph/H)``; the grid that keeps the most of the
    image's pixels wins, ties going to the one that wastes the least padding.

    Example:
        >>> anyres_plan(3000, 1000)
        AnyresPlan(grid=(1008, 336), scaled=(1008, 336), tiles=3)
        >>> anyres_plan(451, 300)  # scaled up: more pixels, no more detail
        AnyresPlan(grid=(672, 336), scaled=(505, 336), tiles=2)
    """
    if width < 1 or height < 1:
        raise ImageError(_("An image of {width}×{height} pixels has no area: pass an image at least 1×1 pixel.")
                         .format(width=width, height=height))

    def score(pin: tuple[int, int]) -> tuple[int, int]:
        pw, ph = pin
        s = min(pw / width, ph / height)
        effective = min(int(width * s) * int(height * s), width * height)
        return effective, -(pw * ph - effective)

    pw, ph = max(_PINPOINTS, key=score)
    s = min(pw / width, ph / height)
    # resized up or down to fill the grid (a small image gains pixels, not detail)
    scaled = (min(pw, max(1, int(width * s))), min(ph, max(1, int(height * s))))
    return AnyresPlan((pw, ph), scaled, (pw // TILE) * (ph // TILE))


def render_model_view(image: Image.Image, *, scale: float = 0.5) -> Image.Image:
    """Draw what the model is given: the 336×336 overview, then the grid with the image scaled into
    it, the padding dark, tile borders yellow and each tile numbered by dots (1 dot = tile 1).

    ``scale`` shrinks the drawing (0.5 keeps a 1008-pixel grid at 504 screen pixels).

    Example:
        >>> view = render_model_view(Image.new("RGB", (800, 600), "red"))
        >>> view.size
        (516, 336)
    """
    image = ImageOps.exif_transpose(image).convert("RGB")
    plan = anyres_plan(*image.size)
    gw, gh = plan.grid
    canvas = Image.new("RGB", (TILE + _GAP + gw, max(TILE, gh)), (255, 255, 255))
    canvas.paste(image.resize((TILE, TILE), Image.Resampling.BICUBIC), (0, 0))
    grid = Image.new("RGB", plan.grid, _PAD)
    sw, sh = plan.scaled
    grid.paste(image.resize(plan.scaled, Image.Resampling.BICUBIC), ((gw - sw) // 2, (gh - sh) // 2))
    canvas.paste(grid, (TILE + _GAP, 0))
    draw = ImageDraw.Draw(canvas)
    draw.rectangle((0, 0, TILE - 1, TILE - 1), outline=(0, 120, 255), width=4)
    number = 0
    for top in range(0, gh, TILE):
        for left in range(0, gw, TILE):
            number += 1
            x, y = TILE + _GAP + left, top
            draw.rectangle((x, y, x + TILE - 1, y + TILE - 1), outline=_LINE, width=4)
            for dot in range(number):  # tile number as dots: no font needed
                cx, cy = x + 18 + dot * 22, y + 18
                draw.ellipse((cx - 7, cy - 7, cx + 7, cy + 7), fill=_LINE, outline=(0, 0, 0), width=2)
    if scale != 1:
        canvas = canvas.resize((max(1, round(canvas.width * scale)), max(1, round(canvas.height * scale))),
                               Image.Resampling.BICUBIC)
    return canvas


def model_view_png(image: Image.Image, *, scale: float = 0.5) -> bytes:
    """:func:`render_model_view` as PNG bytes (for an ``ipywidgets.Image``).

    Example:
        >>> model_view_png(Image.new("RGB", (64, 64)))[:8]
        b'\\x89PNG\\r\\n\\x1a\\n'
    """
    out = io.BytesIO()
    render_model_view(image, scale=scale).save(out, format="PNG", optimize=True)
    return out.getvalue()
