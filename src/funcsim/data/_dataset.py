"""The in-memory dataset every loader returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dataset:
    """Train and test splits as tensors, images scaled to [0, 1] (the paper's preprocessing).

    Shapes: ``x_train`` (N_train, C, H, W) float32, ``y_train`` (N_train,) int64, and likewise
    for the test split. ``classes`` holds one human-readable name per class.
    """

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    classes: tuple[str, ...]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def in_channels(self) -> int:
        return int(self.x_train.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.x_train.shape[2]), int(self.x_train.shape[3])

    def subset(self, train: int | None = None, test: int | None = None) -> Dataset:
        """The first ``train`` / ``test`` examples of each split (None keeps a split whole)."""
        return Dataset(
            name=self.name,
            x_train=self.x_train[:train],
            y_train=self.y_train[:train],
            x_test=self.x_test[:test],
            y_test=self.y_test[:test],
            classes=self.classes,
        )

    def __repr__(self) -> str:
        c, (h, w) = self.in_channels, self.image_size
        return (
            f"Dataset({self.name!r}, train={len(self.y_train)}, test={len(self.y_test)}, "
            f"shape=({c}, {h}, {w}), classes={self.num_classes})"
        )
