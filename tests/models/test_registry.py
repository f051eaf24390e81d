"""Every registered model on every dataset shape, plus the registry's contract.

Models are looped over ``list_models()``, so a new architecture is tested by registering it.
"""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from funcsim.errors import UnknownNameError
from funcsim.models import MODELS, get_model, list_models, register_model

BATCH = 2
# (in_channels, H, W, classes) of the datasets funcsim trains on. CIFAR-100 differs from
# CIFAR-10 only in the classifier, so it gets a forward pass only (keeps ResNet-50 cheap).
SHAPES = {
    "digits": (1, 8, 8, 10),
    "mnist": (1, 28, 28, 10),
    "cifar10": (3, 32, 32, 10),
    "cifar100": (3, 32, 32, 100),
}


def _build(name: str, shape: tuple[int, int, int, int], seed: int = 0) -> nn.Module:
    channels, height, width, classes = shape
    torch.manual_seed(seed)
    return get_model(name, in_channels=channels, num_classes=classes, image_size=(height, width))


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_builtin_models_are_registered() -> None:
    assert set(list_models()) >= {
        "lenet",
        "lenet5",
        "mobilenet",
        "mobilenet_v2",
        "resnet18",
        "resnet50",
    }


@pytest.mark.parametrize("dataset", ["digits", "mnist", "cifar10"])
@pytest.mark.parametrize("name", list_models())
def test_forward_backward(name: str, dataset: str) -> None:
    channels, height, width, classes = SHAPES[dataset]
    model = _build(name, SHAPES[dataset]).train()
    x = torch.rand(BATCH, channels, height, width)
    logits = model(x)
    assert logits.shape == (BATCH, classes)
    assert logits.dtype == torch.float32
    assert torch.isfinite(logits).all()
    nn.functional.cross_entropy(logits, torch.arange(BATCH) % classes).backward()
    for pname, param in model.named_parameters():
        assert param.grad is not None, f"{name}: no gradient for {pname}"
        assert torch.isfinite(param.grad).all(), f"{name}: non-finite gradient for {pname}"
    model.eval()
    with torch.no_grad():
        assert model(x).shape == (BATCH, classes)


@pytest.mark.parametrize("name", list_models())
def test_cifar100_logits(name: str) -> None:
    channels, height, width, classes = SHAPES["cifar100"]
    model = _build(name, SHAPES["cifar100"]).eval()
    with torch.no_grad():
        logits = model(torch.rand(BATCH, channels, height, width))
    assert logits.shape == (BATCH, classes)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", list_models())
def test_same_seed_same_init(name: str) -> None:
    shape = SHAPES["digits"]
    first, second = _build(name, shape, seed=3), _build(name, shape, seed=3)
    other = _build(name, shape, seed=4)
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_unknown_name_lists_registered() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_model("nope", in_channels=1, num_classes=10, image_size=(8, 8))
    message = str(info.value)
    assert "nope" in message
    assert all(name in message for name in list_models())


def test_duplicate_registration_raises() -> None:
    before = list_models()
    with pytest.raises(ValueError, match="lenet"):
        register_model("lenet")(lambda **kwargs: nn.Identity())
    assert list_models() == before
    assert "lenet" in MODELS


def test_image_size_may_be_an_int() -> None:
    model = get_model("lenet", in_channels=1, num_classes=10, image_size=28)
    assert model(torch.rand(BATCH, 1, 28, 28)).shape == (BATCH, 10)


def test_lenet_matches_the_keras_model() -> None:
    model = _build("lenet", SHAPES["mnist"])
    # 320 + 18,496 + (5*5*64)*128 + 128 + 1,290, the paper's Keras LeNet.
    assert _n_params(model) == 225_034
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size, c.padding) for c in convs] == [
        (32, (3, 3), (0, 0)),
        (64, (3, 3), (0, 0)),
    ]
    # CIFAR: 30 -> 15 -> 13 -> 6, so 6*6*64 inputs to Dense(128).
    cifar = _build("lenet", SHAPES["cifar10"])
    assert _n_params(cifar) == 896 + 18_496 + 6 * 6 * 64 * 128 + 128 + 1_290


@pytest.mark.parametrize("dataset", ["digits", "mnist", "cifar10"])
def test_lenet_pool_first_order_trains_bit_for_bit_like_the_paper_order(
    dataset: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Eager LeNet pools before ReLU (faster); weights must follow the paper's order exactly.

    (PyTorch's kernels: the fused stages are tested against them in test_fused.py.)
    """
    monkeypatch.setenv("FUNCSIM_FUSED_KERNELS", "0")
    channels, height, width, classes = SHAPES[dataset]
    fast = _build("lenet", SHAPES[dataset])
    paper = copy.deepcopy(fast)
    fast_opt = torch.optim.Adam(fast.parameters(), lr=1e-2)
    paper_opt = torch.optim.Adam(paper.parameters(), lr=1e-2)
    generator = torch.Generator().manual_seed(1)
    for _ in range(5):
        # shifted negative: many pooling windows hold only negative values (zero gradient)
        x = torch.randn(16, channels, height, width, generator=generator) - 0.5
        y = torch.randint(0, classes, (16,), generator=generator)
        fast_loss = F.cross_entropy(fast(x), y)
        paper_loss = F.cross_entropy(paper.classifier(paper.features(x)), y)
        assert torch.equal(fast_loss, paper_loss)
        for loss, opt in ((fast_loss, fast_opt), (paper_loss, paper_opt)):
            opt.zero_grad()
            loss.backward()
            opt.step()
    for (name, a), b in zip(fast.state_dict().items(), paper.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    fast.eval()
    x = torch.randn(4, channels, height, width)
    assert torch.equal(fast(x), paper.classifier(paper.features(x)))


def test_lenet_exports_in_the_papers_order() -> None:
    """Traced, LeNet keeps Conv - ReLU - MaxPool, the pattern pt2e quantizers fuse."""
    model = _build("lenet", SHAPES["mnist"]).eval()
    exported = torch.export.export(model, (torch.rand(2, 1, 28, 28),), strict=True)
    ops = [str(node.target) for node in exported.graph.nodes if node.op == "call_function"]
    features = [op.split(".")[1] for op in ops if "conv2d" in op or "relu" in op or "pool" in op]
    assert features[:6] == ["conv2d", "relu", "max_pool2d"] * 2


def test_lenet_pads_on_digits() -> None:
    convs = [m for m in _build("lenet", SHAPES["digits"]).modules() if isinstance(m, nn.Conv2d)]
    assert [c.padding for c in convs] == [(1, 1), (1, 1)]


def test_lenet5_reaches_the_classic_map_on_mnist_and_cifar() -> None:
    for dataset in ("mnist", "cifar10"):
        linears = [
            m for m in _build("lenet5", SHAPES[dataset]).modules() if isinstance(m, nn.Linear)
        ]
        assert [(m.in_features, m.out_features) for m in linears] == [
            (400, 120),
            (120, 84),
            (84, 10),
        ]


def test_mobilenet_is_keras_mobilenet_v1() -> None:
    model = _build("mobilenet", SHAPES["cifar10"])
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 27  # stem + 13 blocks x (depthwise, pointwise); pruning tests rely on it
    assert all(bn.eps == 1e-3 and bn.momentum == 0.01 for bn in bns)
    backbone = sum(p.numel() for p in model.features.parameters())
    assert backbone == 3_206_976  # Keras MobileNet(include_top=False) trainable parameters
    assert model.features(torch.rand(BATCH, 3, 32, 32)).shape == (BATCH, 1024, 1, 1)
    depthwise = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    assert sum(m.stride == (2, 2) for m in depthwise) == 4  # all of Keras' strides kept at 32 px


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
def test_resnet_small_image_stem(name: str) -> None:
    model = _build(name, SHAPES["mnist"])
    assert isinstance(model.conv1, nn.Conv2d)
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (
        1,
        (3, 3),
        (1, 1),
    )
    assert isinstance(model.maxpool, nn.Identity)
    linears = [m for m in model.fc.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [512, 10]


def test_resnet_keeps_imagenet_stem_on_large_images() -> None:
    model = get_model("resnet18", in_channels=1, num_classes=5, image_size=(96, 96))
    assert (model.conv1.in_channels, model.conv1.kernel_size, model.conv1.stride) == (
        1,
        (7, 7),
        (2, 2),
    )
    assert isinstance(model.maxpool, nn.MaxPool2d)
    assert model(torch.rand(BATCH, 1, 96, 96)).shape == (BATCH, 5)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2"])
def test_stem_override(name: str) -> None:
    builder = MODELS.get(name)
    cifar = builder(in_channels=3, num_classes=10, image_size=(32, 32))
    imagenet = builder(in_channels=3, num_classes=10, image_size=(32, 32), stem="imagenet")
    first_conv = {
        stem: next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        for stem, model in (("cifar", cifar), ("imagenet", imagenet))
    }
    assert first_conv["cifar"].stride == (1, 1)
    assert first_conv["imagenet"].stride == (2, 2)
    assert imagenet(torch.rand(BATCH, 3, 32, 32)).shape == (BATCH, 10)
    with pytest.raises(ValueError, match="stem"):
        builder(in_channels=3, num_classes=10, image_size=(32, 32), stem="tiny")
