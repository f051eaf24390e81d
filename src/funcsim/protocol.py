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


PROTOCOLS: dict[str, Protocol] = {
    "paper": Protocol(
        name="paper",
        prune_scope="all",
        distill_optimizer="adamax",
        train_precision="fp32",
        int8_mode="dynamic",
    ),
    "sound": Protocol(
        name="sound",
        prune_scope="weights",
        distill_optimizer="adam",
        train_precision="bf16",
        int8_mode="dynamic",
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
