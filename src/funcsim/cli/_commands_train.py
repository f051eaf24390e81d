"""``funcsim train`` and ``funcsim list``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from funcsim import __version__
from funcsim.cli._app import app, out, state
from funcsim.config import DataConfig, TrainConfig, validated

DataDirOption = Annotated[
    Path | None,
    typer.Option(
        "--data-dir",
        help="Folder with the dataset files (default: $FUNCSIM_DATA_DIR or ~/.cache/funcsim/data).",
    ),
]
DownloadOption = Annotated[
    bool,
    typer.Option(
        "--download", help="Fetch missing dataset files through torchvision (needs a network)."
    ),
]


@app.command()
def train(
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset name (see `funcsim list datasets`).")
    ] = "digits",
    arch: Annotated[
        str, typer.Option("--arch", "-a", help="Architecture (see `funcsim list models`).")
    ] = "lenet",
    seed: Annotated[
        int, typer.Option("--seed", "-s", help="Seed of init, data order and dropout.")
    ] = 0,
    epochs: Annotated[
        int, typer.Option("--epochs", "-e", help="Training epochs (the paper: 25).")
    ] = 25,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Mini-batch size (the paper: 64).")
    ] = 64,
    lr: Annotated[float, typer.Option("--lr", help="Learning rate (the paper: Adam 1e-3).")] = 1e-3,
    optimizer: Annotated[str, typer.Option("--optimizer", help="adam, adamax or sgd.")] = "adam",
    precision: Annotated[
        str, typer.Option("--precision", help="fp32 (paper) or bf16 (autocast where supported).")
    ] = "fp32",
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda.")] = "auto",
    protocol: Annotated[
        str,
        typer.Option(
            "--protocol",
            help="paper or sound: architecture options such as the ResNet stem on small "
            "images (see funcsim/protocol.py).",
        ),
    ] = "paper",
    out_dir: Annotated[
        Path | None,
        typer.Option(
            "--out", "-o", help="Output run folder (default runs/<dataset>-<arch>-s<seed>)."
        ),
    ] = None,
    data_dir: DataDirOption = None,
    download: DownloadOption = False,
    train_limit: Annotated[
        int | None, typer.Option("--train-limit", help="Use only the first N training examples.")
    ] = None,
    test_limit: Annotated[
        int | None, typer.Option("--test-limit", help="Use only the first N test examples.")
    ] = None,
) -> None:
    """Train one model and record its functional trajectory.

    Writes init/final weights (safetensors), the test-set softmax after every epoch
    (predictions.npy, shape (epochs+1, N_test, C)), per-epoch metrics and the resolved config.
    """
    from funcsim.data import load_dataset
    from funcsim.models._api import MODELS
    from funcsim.protocol import get_protocol
    from funcsim.train import save_result, train_model

    cfg = validated(
        TrainConfig,
        "train options",
        epochs=epochs,
        batch_size=batch_size,
        lr=lr,
        optimizer=optimizer,
        precision=precision,
        device=device,
        seed=seed,
    )
    data_cfg = validated(
        DataConfig,
        "data options",
        data_dir=data_dir,
        download=download,
        train_limit=train_limit,
        test_limit=test_limit,
    )
    MODELS.get(arch)  # an unknown name fails here, before any data are read
    get_protocol(protocol)
    data = load_dataset(
        dataset,
        data_dir=data_cfg.data_dir,
        download=data_cfg.download,
        train_limit=data_cfg.train_limit,
        test_limit=data_cfg.test_limit,
    )
    target = out_dir or Path("runs") / f"{dataset}-{arch}-s{seed}"
    _, result = train_model(data, arch, cfg, progress=not state.quiet, protocol=protocol)
    config = {
        "kind": "train",
        "protocol": protocol,
        "funcsim_version": __version__,
        "dataset": dataset,
        "arch": arch,
        "data": data_cfg.model_dump(mode="json"),
        "train": cfg.model_dump(mode="json"),
    }
    save_result(target, result, data, config)
    out.print(
        f"{arch} on {dataset} (seed {seed}): test accuracy {result.test_accuracy[-1]:.2%} "
        f"after {cfg.epochs} epochs in {result.seconds:.1f}s "
        f"({result.images_per_second:,.0f} images/s) -> {target}"
    )


@app.command("list")
def list_things(
    what: Annotated[str, typer.Argument(help="datasets, models, methods or presets.")],
) -> None:
    """List registered datasets, models, compression methods or study presets."""
    from funcsim.errors import ConfigError

    if what == "datasets":
        from funcsim.data import list_datasets

        names = list_datasets()
    elif what == "models":
        from funcsim.models import list_models

        names = list_models()
    elif what == "methods":
        from funcsim.compress import list_methods

        names = list_methods()
    elif what == "presets":
        from funcsim.config import list_presets

        names = list_presets()
    else:
        raise ConfigError(
            f"cannot list {what!r}; choose one of: datasets, models, methods, presets"
        )
    for name in names:
        out.print(name)
