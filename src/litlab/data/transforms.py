"""Transforms from config: ``[{name: normalize, mean: [0.5], std: [0.25]}, {name: hflip}]``.

Every transform works on a batch ``(B, C, ...)``, so one implementation serves both places:
per sample in the loader's workers (``data.transforms``, a batch of one) and per batch on the
device after transfer (``data.batch_transforms``). Random ones (augmentations) apply to the
training split only; deterministic ones (normalize, scale) to every split.
"""

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset


class Transform:
    random = False

    def __call__(self, x: Tensor) -> Tensor:
        raise NotImplementedError


def _per_channel(values: float | Sequence[float], x: Tensor) -> Tensor:
    v = torch.as_tensor(values, dtype=x.dtype, device=x.device)
    return v.view(1, -1, *[1] * (x.dim() - 2)) if v.dim() else v


class Normalize(Transform):
    """``(x - mean) / std``, per channel when given lists."""

    def __init__(self, mean: float | Sequence[float], std: float | Sequence[float]) -> None:
        if min(std if isinstance(std, Sequence) else [std]) <= 0:
            raise ValueError(f"std={std}: every std must be > 0 (a 0 divides by zero: NaN inputs)")
        self.mean, self.std = mean, std

    def __call__(self, x: Tensor) -> Tensor:
        centred = x - _per_channel(self.mean, x)
        if not centred.is_floating_point():  # integers: true division makes the float result
            return centred / _per_channel(self.std, x)
        # In place on the new tensor: a split normalized in memory (MNIST's: 170 MB) takes one more copy, not two.
        return centred.div_(_per_channel(self.std, x))


class Scale(Transform):
    """``x * factor`` as float, e.g. ``factor: 0.00392156862745098`` (1/255) for uint8 images."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def __call__(self, x: Tensor) -> Tensor:
        return x.float() * self.factor


class RandomCrop(Transform):
    """Zero-pad ``padding`` pixels on each side, then crop back to the original size at a random offset per sample."""

    random = True

    def __init__(self, padding: int = 4) -> None:
        self.padding = padding

    def __call__(self, x: Tensor) -> Tensor:
        B, _, H, W = x.shape
        p = self.padding
        padded = torch.nn.functional.pad(x, (p, p, p, p))
        dy, dx = (torch.randint(0, 2 * p + 1, (B, 1), device=x.device) for _ in range(2))
        rows = (dy + torch.arange(H, device=x.device))[:, None, :, None]  # (B, 1, H, 1)
        cols = (dx + torch.arange(W, device=x.device))[:, None, None, :]  # (B, 1, 1, W)
        b = torch.arange(B, device=x.device)[:, None, None, None]
        c = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
        return padded[b, c, rows, cols]  # one gather for the whole batch


class HorizontalFlip(Transform):
    """Mirror each sample left-right with probability ``p``."""

    random = True

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, x: Tensor) -> Tensor:
        flip = torch.rand(x.shape[0], device=x.device) < self.p
        return torch.where(flip.view(-1, *[1] * (x.dim() - 1)), x.flip(-1), x)


class GaussianNoise(Transform):
    """Add ``N(0, std^2)`` noise."""

    random = True

    def __init__(self, std: float = 0.1) -> None:
        self.std = std

    def __call__(self, x: Tensor) -> Tensor:
        return x + torch.randn_like(x) * self.std


TRANSFORMS: dict[str, type[Transform]] = {
    "normalize": Normalize,
    "scale": Scale,
    "random_crop": RandomCrop,
    "hflip": HorizontalFlip,
    "gaussian_noise": GaussianNoise,
}


class Compose:
    """Transforms applied in order; ``select(train)`` keeps those that apply to a split."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def select(self, train: bool) -> "Compose | None":
        kept = [t for t in self.transforms if train or not t.random]
        return Compose(kept) if kept else None

    def __call__(self, x: Tensor) -> Tensor:
        for t in self.transforms:
            x = t(x)
        return x


def build_transform(spec: Mapping[str, Any]) -> Transform:
    """One transform from ``{name: ..., **arguments}``."""
    args = dict(spec)
    name = args.pop("name", None)
    if name not in TRANSFORMS:
        raise ValueError(f"transform name={name!r} is unknown; choose one of {sorted(TRANSFORMS)}")
    try:
        return TRANSFORMS[name](**args)
    except TypeError as e:
        raise ValueError(f"transform {name!r} got bad arguments {args}: {e}") from None


def compose(specs: Sequence[Mapping[str, Any]] | None) -> Compose | None:
    """A ``Compose`` from a config list, or None for no transforms."""
    return Compose([build_transform(s) for s in specs]) if specs else None


class TransformDataset(Dataset):
    """Applies a transform to the input of each sample (a batch of one)."""

    def __init__(self, dataset: Dataset, transform: Compose) -> None:
        self.dataset, self.transform = dataset, transform

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple:
        x, *rest = self.dataset[i]
        return (self.transform(x[None])[0], *rest)
