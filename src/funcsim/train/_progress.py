"""A Rich progress bar over the batches of every epoch (silent when disabled)."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class EpochProgress:
    """``with EpochProgress("train", epochs, steps) as bar: bar.step(); bar.end_epoch(...)``."""

    def __init__(
        self, description: str, epochs: int, steps_per_epoch: int, *, enabled: bool = True
    ) -> None:
        self.description = description
        self.epochs = epochs
        self.steps = steps_per_epoch
        self.enabled = enabled
        self._progress: Progress | None = None
        self._task = TaskID(0)

    def __enter__(self) -> EpochProgress:
        if self.enabled:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[status]}"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
                console=Console(stderr=True),
                transient=True,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                f"{self.description} epoch 1/{self.epochs}",
                total=self.epochs * self.steps,
                status="",
            )
        return self

    def step(self) -> None:
        if self._progress is not None:
            self._progress.advance(self._task)

    def end_epoch(self, epoch: int, train_loss: float, test_accuracy: float) -> None:
        if self._progress is not None:
            nxt = min(epoch + 1, self.epochs)
            self._progress.update(
                self._task,
                description=f"{self.description} epoch {nxt}/{self.epochs}",
                status=f"loss {train_loss:.4f} acc {test_accuracy:.2%}",
            )

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._progress is not None:
            self._progress.stop()
