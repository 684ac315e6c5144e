"""Drawing helpers for the image callbacks: PIL only, imported when first drawn."""

from typing import Any


def font(size: int = 12) -> Any:
    from PIL import ImageFont

    return ImageFont.load_default(size=size)
