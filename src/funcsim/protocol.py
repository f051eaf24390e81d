"""The two protocols side by side: every difference between ``paper`` and ``sound`` lives here.

``paper`` reproduces the original implementation (the author's public notebooks), including
its questionable choices; ``sound`` is what we recommend. Code elsewhere asks
``get_protocol(name).<field>`` instead of branching on the protocol's name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from funcsim.errors import ConfigError

ProtocolName = Literal["paper", "sound"]


@dataclass(frozen=True)
class Protocol:
    name: str
    prune_scope: Literal["all", "weights"]
    """``all``: one global L1 threshold over every parameter *and* BatchNorm buffer (the
    original's Keras code did this; a likely cause of MobileNet's collapse at 10 %).
    ``weights``: only conv/linear weights are pruned."""
    distill_optimizer: Literal["adam", "adamax"]
    """The original trained students with Adamax (lr 1e-3) while bases used Adam; ``sound``
    keeps the base's optimizer so that only the loss differs between teacher and student."""
    train_precision: Literal["fp32", "bf16"]
    """``bf16`` = bf16 autocast (and channels-last) where the device supports it; the function
    distance this causes is measured in BENCHMARKS.md. The paper trained in float32."""
    int8_mode: Literal["dynamic", "static"]
    """The paper's 8-bit is dynamic-range (int8 weights per output channel, float
    activations); we keep it in ``sound`` too, static int8 is an extra method."""
    small_image_stem: Literal["imagenet", "cifar"]
    """Stem of the torchvision models (ResNets, MobileNet v2) on small images. The original
    ran Keras' ImageNet networks unchanged on 32x32 inputs (7x7 stride-2 conv and max-pool:
    a 1x1 map at the end); ``sound`` uses the usual small-image stem (3x3 stride 1, no pool),
    about 15x the compute. ``mobilenet`` (v1) copies Keras and takes no such option."""

    def model_options(self, arch: str) -> dict[str, str]:
        """Builder options this protocol sets for ``arch`` (only those its builder takes)."""
        import inspect

        from funcsim.models._api import MODELS

        if "stem" in inspect.signature(MODELS.get(arch)).parameters:
            return {"stem": self.small_image_stem}
        return {}


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        name="paper",
        prune_scope="all",
        distill_optimizer="adamax",
        train_precision="fp32",
        int8_mode="dynamic",
        small_image_stem="imagenet",
    ),
    "sound": Protocol(
        name="sound",
        prune_scope="weights",
        distill_optimizer="adam",
        train_precision="bf16",
        int8_mode="dynamic",
        small_image_stem="cifar",
    ),
}


def get_protocol(name: str) -> Protocol:
    """The protocol called ``name`` (``paper`` or ``sound``)."""
    try:
        return PROTOCOLS[name]
    except KeyError:
        raise ConfigError(
            f"unknown protocol {name!r}; choose one of: {', '.join(PROTOCOLS)}"
        ) from None
