"""Typed, validated settings. YAML is parsed here and nowhere else.

Every model forbids unknown keys and checks ranges, so a bad value is reported with the
field's dotted path and what is allowed (see :func:`format_validation_error`). Typed objects
flow inward; the resolved config is written beside every output (``model_dump``).
"""

from __future__ import annotations

import difflib
import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from funcsim.errors import ConfigError


def _distinct(v: list[Any]) -> list[Any]:
    """Reject repeated entries (each would expand into the same job twice)."""
    seen: list[Any] = []
    for item in v:
        if item in seen:
            raise ValueError(f"entries must be distinct, {item!r} appears twice")
        seen.append(item)
    return v


_SAFE_NAME = re.compile(r"[A-Za-z0-9_.-]{1,100}")

Device = Literal["auto", "cpu", "cuda"]
Precision = Literal["fp32", "bf16"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainConfig(_Strict):
    """How one model is trained (the paper: Adam lr 1e-3, batch 64, 25 epochs)."""

    epochs: int = Field(25, ge=1, le=10_000)
    batch_size: int = Field(64, ge=1)
    optimizer: Literal["adam", "adamax", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)
    precision: Precision = "fp32"
    """``bf16`` trains under bf16 autocast where the device supports it (``sound``)."""
    channels_last: bool = True
    """Channels-last memory format for 4-D inputs: same float32 numerics, faster convs."""
    eval_batch_size: int | None = Field(None, ge=1)
    """Test-set batch of the per-epoch evaluation; None: 256 on CPU, 2048 on CUDA."""
    device: Device = "auto"
    seed: int = Field(0, ge=0)


class DataConfig(_Strict):
    """Where data come from; ``train_limit``/``test_limit`` keep the first N examples."""

    data_dir: Path | None = None
    download: bool = False
    train_limit: int | None = Field(None, ge=1)
    test_limit: int | None = Field(None, ge=1)


class DistillConfig(_Strict):
    """Knowledge distillation: Hinton loss, T=3, alpha weights the hard-label term."""

    alphas: list[float] = Field(default_factory=lambda: [0.1, 0.5, 0.9])
    temperature: float = Field(3.0, gt=0)
    students: list[str] = Field(default_factory=lambda: ["same"])
    """``same`` = self-distillation from the teacher's initial weights; else an architecture."""
    epochs: int | None = Field(None, ge=1)
    """None: as many epochs as the teacher was trained."""

    @field_validator("alphas", "students")
    @classmethod
    def _distinct_entries(cls, v: list[Any]) -> list[Any]:
        return _distinct(v)

    @field_validator("alphas")
    @classmethod
    def _alphas_in_unit_interval(cls, v: list[float]) -> list[float]:
        for a in v:
            if not 0.0 <= a <= 1.0:
                raise ValueError(f"alpha must lie in [0, 1], got {a}")
        return v


class QuantizeConfig(_Strict):
    """Post-hoc quantization; bits 16 -> float16 weights, 8 -> int8, 4 -> int4 weight-only."""

    bits: list[int] = Field(default_factory=lambda: [16, 8])
    extra: list[str] = Field(default_factory=list)
    """Methods beyond the paper, e.g. ``bfloat16``, ``int8_static``."""

    @field_validator("bits", "extra")
    @classmethod
    def _distinct_entries(cls, v: list[Any]) -> list[Any]:
        return _distinct(v)

    @field_validator("bits")
    @classmethod
    def _supported_bits(cls, v: list[int]) -> list[int]:
        for b in v:
            if b not in (16, 8, 4):
                raise ValueError(f"bits must be one of 16, 8, 4, got {b}")
        return v


class PruneConfig(_Strict):
    """Global L1 unstructured pruning, post hoc (no fine-tuning in the paper)."""

    amounts: list[float] = Field(default_factory=lambda: [0.1, 0.3, 0.5, 0.7, 0.9])
    scope: Literal["all", "weights"] | None = None
    """None: the protocol's choice (paper ``all``, sound ``weights``)."""
    fine_tune_epochs: int = Field(0, ge=0)
    structured_amounts: list[float] = Field(default_factory=list)
    """Structured L1 channel pruning (beyond the paper); empty = off."""

    @field_validator("amounts", "structured_amounts")
    @classmethod
    def _amount_range(cls, v: list[float]) -> list[float]:
        _distinct(v)
        for a in v:
            if not 0.0 <= a < 1.0:
                raise ValueError(f"pruning amount must lie in [0, 1), got {a}")
        return v


class LandscapeConfig(_Strict):
    method: Literal["tsne", "pca"] = "tsne"
    perplexity: float | None = Field(None, gt=0)
    """None: adapted to the number of checkpoints."""
    random_state: int = 42
    tsne_method: Literal["auto", "exact", "barnes_hut"] = "auto"
    """auto: exact t-SNE up to 1,000 checkpoints, scikit-learn's Barnes-Hut (the paper's) beyond."""


class StudyConfig(_Strict):
    """One study: datasets x architectures x {seeds, distillation, quantization, pruning}."""

    name: str = "study"
    """Names the study's folder (``runs/<name>``): 1-100 letters, digits, ``_ . -``."""
    description: str = Field("", max_length=500)
    """One line shown by ``funcsim presets`` and at the top of the report."""
    protocol: Literal["paper", "sound"] = "paper"
    datasets: list[str] = Field(default_factory=lambda: ["digits"], min_length=1)
    archs: list[str] = Field(default_factory=lambda: ["lenet"], min_length=1)
    seeds: list[int] = Field(default_factory=lambda: [0, 1, 2], min_length=1)
    """The first seed trains the base; the others are the independent yardstick."""
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    quantize: QuantizeConfig = Field(default_factory=QuantizeConfig)
    prune: PruneConfig = Field(default_factory=PruneConfig)
    landscape: LandscapeConfig = Field(default_factory=LandscapeConfig)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not _SAFE_NAME.fullmatch(v) or v in (".", ".."):
            raise ValueError(
                "must be 1-100 letters, digits, '_', '.' or '-' and not '.' or '..' "
                f"(it names the study's folder), got {v!r}"
            )
        return v

    @field_validator("datasets", "archs")
    @classmethod
    def _distinct_names(cls, v: list[str]) -> list[str]:
        return _distinct(v)

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, v: list[int]) -> list[int]:
        if len(set(v)) != len(v):
            raise ValueError(f"seeds must be distinct, got {v}")
        if any(s < 0 for s in v):
            raise ValueError(f"seeds must be >= 0, got {v}")
        return v


def _section(model: type[BaseModel] | None, loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The (nested) settings model that holds the field at ``loc``, if known."""
    for part in loc[:-1]:
        if model is None:
            return None
        if isinstance(part, int):  # a list entry
            continue
        field = model.model_fields.get(str(part))
        annotation = field.annotation if field is not None else None
        is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        model = annotation if is_model else None
    return model


def _shown(value: Any) -> str | None:
    """``repr(value)`` when it is a short scalar worth quoting in a message."""
    if value is None or isinstance(value, (str, int, float, bool)):
        text = repr(value)
        return text if len(text) <= 60 else None
    return None


def format_validation_error(
    err: ValidationError, source: str = "config", model: type[BaseModel] | None = None
) -> str:
    """One line: ``source: field.path: what is wrong`` for the first error.

    ``model`` (the validated class) lets an unknown key be answered with the allowed ones.
    """
    first = err.errors()[0]
    loc = tuple(first["loc"])
    where = ".".join(str(p) for p in loc) or "(top level)"
    msg, kind = first["msg"], first["type"]
    if kind == "extra_forbidden":
        msg = "unknown key"
        section = _section(model, loc)
        if section is not None:
            allowed = list(section.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            msg = f"unknown key{hint}; allowed keys: {', '.join(allowed)}"
    elif kind == "value_error":  # our validators' messages already say what was given
        msg = msg.removeprefix("Value error, ")
    else:
        if kind.startswith("literal_error"):
            msg = msg.replace("Input should be", "must be")
        given = _shown(first.get("input"))
        if given is not None and kind != "missing":
            msg = f"{msg}, got {given}"
    more = len(err.errors()) - 1
    suffix = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
    return f"{source}: {where}: {msg}{suffix}"


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ConfigError(f"--set {text!r}: expected KEY=VALUE, e.g. train.epochs=5")
    key, _, raw = text.partition("=")
    path = [p for p in key.strip().split(".") if p]
    if not path:
        raise ConfigError(f"--set {text!r}: empty key")
    return path, yaml.safe_load(raw) if raw.strip() else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (values parsed as YAML) to a raw config mapping."""
    for text in overrides:
        path, value = _parse_override(text)
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {text!r}: {part!r} is not a section")
            node = child
        node[path[-1]] = value
    return data


def list_presets() -> list[str]:
    """Names of the study presets shipped with funcsim."""
    folder = resources.files("funcsim") / "presets"
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def _read_yaml(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{source}: not valid YAML{where}: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level")
    return data


def load_study_config(source: str | Path | None = None, overrides: list[str] = ()) -> StudyConfig:  # type: ignore[assignment]
    """A validated :class:`StudyConfig` from a preset name, a YAML path or None (``quick``)."""
    name = "quick" if source is None else str(source)
    if name in list_presets() and not Path(name).is_file():
        text = (resources.files("funcsim") / "presets" / f"{name}.yaml").read_text()
        label = f"preset {name}"
    else:
        path = Path(name)
        if not path.is_file():
            raise ConfigError(
                f"config {name!r}: no such file and no such preset "
                f"(presets: {', '.join(list_presets())})"
            )
        text, label = path.read_text(), str(path)
    data = apply_overrides(_read_yaml(text, label), list(overrides))
    try:
        return StudyConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, label, StudyConfig)) from None


M = TypeVar("M", bound=BaseModel)


def validated(model: type[M], source: str = "options", /, **values: Any) -> M:
    """``model(**values)`` with a validation failure turned into a one-line ConfigError.

    Values that are None are dropped so the model's defaults apply.
    """
    try:
        return model.model_validate({k: v for k, v in values.items() if v is not None})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, source, model)) from None
