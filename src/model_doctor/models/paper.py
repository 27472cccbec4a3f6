"""The paper's 16 architectures (Table 1), for 28-px grey digits as well as 224-px photos.

Each comes from torchvision or timm where they have it; WRN-28-10 and SimpleNet-v1 are ours
(:mod:`model_doctor.models.archs`). ``small=True`` (default below 64 px) switches to the usual CIFAR-style variant:
the stem convolution becomes 3x3 stride 1 and the stem's max-pool is dropped, so a 32-px image
is not reduced to 1x1 before the deep layers the method works on. ``in_channels`` replaces the
stem convolution (torchvision) or is passed to timm (``in_chans``).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from .archs import SimpleNetV1, WideResNet
from .registry import register_model

__all__ = ["PAPER_MODELS", "set_in_channels", "timm_model"]

#: Registry names of the paper's architectures, in Table 1's order.
PAPER_MODELS = ["alexnet", "vgg16_bn", "resnet34", "resnet50", "senet34", "wideresnet28_10", "resnext50",
                "densenet121", "simplenetv1", "efficientnetv2_s", "googlenet", "xception", "mobilenetv2",
                "inceptionv3", "shufflenetv2", "squeezenet", "mnasnet"]


def _get(model: nn.Module, path: str) -> nn.Module:
    return model.get_submodule(path)


def _set(model: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, leaf = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, leaf, module)


def _conv_like(old: nn.Conv2d, in_channels: int | None = None, kernel: int | None = None, stride: int | None = None,
               padding: int | None = None) -> nn.Conv2d:
    k = kernel or old.kernel_size[0]
    return nn.Conv2d(in_channels or old.in_channels, old.out_channels, k, stride=stride or old.stride[0],
                     padding=(k // 2) if padding is None and kernel else (padding if padding is not None else old.padding[0]),
                     bias=old.bias is not None)


def _stem(model: nn.Module, conv: str, in_channels: int, small: bool, pools: tuple[str, ...] = (),
          small_kernel: int | None = 3) -> nn.Module:
    """Replace the stem conv for ``in_channels``; for ``small``, make it stride 1 (``small_kernel``)
    and drop the named max-pools."""
    old = _get(model, conv)
    assert isinstance(old, nn.Conv2d)
    if small:
        _set(model, conv, _conv_like(old, in_channels, kernel=small_kernel, stride=1))
        for p in pools:
            _set(model, p, nn.Identity())
    elif in_channels != old.in_channels:
        _set(model, conv, _conv_like(old, in_channels))
    return model


def set_in_channels(model: nn.Module, in_channels: int) -> nn.Module:
    """Swap the first ``Conv2d`` (registration order) for one taking ``in_channels``."""
    for name, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            if m.in_channels != in_channels:
                if m.groups != 1:
                    raise ValueError(f"cannot adapt grouped stem conv {name!r} to {in_channels} channels")
                _set(model, name, _conv_like(m, in_channels))
            return model
    raise ValueError(f"{type(model).__name__} has no Conv2d to adapt to {in_channels} input channels")


def _tv(name: str, num_classes: int, **kw) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=num_classes, **kw)


def timm_model(name: str, in_channels: int, num_classes: int) -> nn.Module:
    """A freshly initialised timm model (``timm:NAME`` and the timm-sourced paper architectures)."""
    try:
        import timm
    except ImportError:
        raise ValueError("timm:NAME needs the timm package; pip install timm") from None
    if not timm.is_model(name):
        raise ValueError(f"unknown timm model {name!r}; see timm.list_models()")
    return timm.create_model(name, pretrained=False, num_classes=num_classes, in_chans=in_channels)


@register_model("vgg16_bn", source="torchvision", default_layers="features.40", paper_name="VGG-16 (BN)",
                pretrained="torchvision:vgg16_bn",
                small_variant="7x7 average pool + 3 FC layers -> global average pool + 1 FC (CIFAR VGG)")
def vgg16_bn(in_channels=3, num_classes=10, image_size=224, small=False):
    m = _stem(_tv("vgg16_bn", num_classes), "features.0", in_channels, False)
    if small:
        m.avgpool = nn.AdaptiveAvgPool2d(1)
        m.classifier = nn.Sequential(nn.Flatten(), nn.Linear(512, num_classes))
    return m


@register_model("wideresnet28_10", source="ours", default_layers="block3.3.conv2", paper_name="WideResNet-28-10",
                small_variant="always the CIFAR network; inputs >= 64 px get a stride-2 stem")
def wideresnet28_10(in_channels=3, num_classes=10, image_size=32, small=True):
    m = WideResNet(28, 10, in_channels, num_classes)
    if not small:
        m.conv1 = nn.Conv2d(in_channels, 16, 3, 2, 1, bias=False)
    return m


@register_model("simplenetv1", source="ours", default_layers="auto", paper_name="SimpleNet-v1",
                small_variant="CIFAR layout; one extra 2x2 max-pool per doubling above 64 px")
def simplenetv1(in_channels=3, num_classes=10, image_size=32, small=True):
    return SimpleNetV1(in_channels, num_classes, image_size if not small else min(image_size, 64))


@register_model("googlenet", source="torchvision", default_layers="inception5b", paper_name="GoogLeNet",
                pretrained="torchvision:googlenet",
                small_variant="stem 7x7/2 -> 3x3/1, first max-pool dropped")
def googlenet(in_channels=3, num_classes=10, image_size=224, small=False):
    m = _tv("googlenet", num_classes, aux_logits=False, init_weights=True)
    m.transform_input = False
    return _stem(m, "conv1.conv", in_channels, small, ("maxpool1",))


@register_model("xception", source="timm (legacy_xception)", default_layers="conv4", paper_name="Xception",
                pretrained="timm:legacy_xception",
                small_variant="stem stride 2 -> 1 (padding 1)")
def xception(in_channels=3, num_classes=10, image_size=299, small=False):
    m = timm_model("legacy_xception", in_channels, num_classes)
    if small:
        m.conv1 = _conv_like(m.conv1, in_channels, kernel=3, stride=1)
    return m


class _InceptionV3(nn.Module):
    """torchvision Inception-v3, inputs below its 75-px minimum bilinearly resized to 75 px."""

    MIN_SIZE = 75

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        net = _tv("inception_v3", num_classes, aux_logits=False, init_weights=True)
        net.transform_input = False  # type: ignore[assignment]  # torchvision declares module attributes loosely
        self.net = _stem(net, "Conv2d_1a_3x3.conv", in_channels, False)

    def forward(self, x):
        if x.shape[-1] < self.MIN_SIZE or x.shape[-2] < self.MIN_SIZE:
            x = F.interpolate(x, size=(max(x.shape[-2], self.MIN_SIZE), max(x.shape[-1], self.MIN_SIZE)),
                              mode="bilinear", align_corners=False)
        return self.net(x)


@register_model("inceptionv3", source="torchvision (inception_v3)", default_layers="net.Mixed_7c",
                pretrained="torchvision:inception_v3",
                paper_name="Inception-v3", small_variant="inputs < 75 px resized to 75 px inside the model")
def inceptionv3(in_channels=3, num_classes=10, image_size=299, small=False):
    return _InceptionV3(in_channels, num_classes)


# Architectures whose only adaptation is the stem: (name, builder, stem conv, stem pools dropped when
# small, default layers, paper name, source, what the small variant changes); ImageNet weights in _PRETRAINED.
_STEM_ONLY = [
    ("alexnet", lambda c, n: _tv("alexnet", n), "features.0", (), "features.10", "AlexNet", "torchvision",
     "stem 11x11/4 -> 3x3/1"),
    ("resnet18", lambda c, n: _tv("resnet18", n), "conv1", ("maxpool",), "layer4.1.conv2",
     "ResNet-18 (not in the paper; the usual small residual baseline)", "torchvision",
     "stem 7x7/2 -> 3x3/1, no max-pool"),
    ("resnet34", lambda c, n: _tv("resnet34", n), "conv1", ("maxpool",), "layer4.2.conv2", "ResNet-34", "torchvision",
     "stem 7x7/2 -> 3x3/1, no max-pool"),
    ("resnet50", lambda c, n: _tv("resnet50", n), "conv1", ("maxpool",), "layer4.2.conv3", "ResNet-50", "torchvision",
     "stem 7x7/2 -> 3x3/1, no max-pool"),
    ("senet34", lambda c, n: timm_model("seresnet34", c, n), "conv1", ("maxpool",), "layer4.2.conv2",
     "SENet-34 (SE-ResNet-34)", "timm (seresnet34)", "stem 7x7/2 -> 3x3/1, no max-pool"),
    ("resnext50", lambda c, n: _tv("resnext50_32x4d", n), "conv1", ("maxpool",), "layer4.2.conv3",
     "ResNeXt-50 (32x4d)", "torchvision (resnext50_32x4d)", "stem 7x7/2 -> 3x3/1, no max-pool"),
    ("densenet121", lambda c, n: _tv("densenet121", n), "features.conv0", ("features.pool0",), "features.denseblock4",
     "DenseNet-121", "torchvision", "stem 7x7/2 -> 3x3/1, no max-pool"),
    ("efficientnetv2_s", lambda c, n: _tv("efficientnet_v2_s", n), "features.0.0", (), "features.7.0",
     "EfficientNetV2-S", "torchvision (efficientnet_v2_s)", "stem stride 2 -> 1"),
    ("mobilenetv2", lambda c, n: _tv("mobilenet_v2", n), "features.0.0", (), "features.18.0", "MobileNetV2",
     "torchvision (mobilenet_v2)", "stem stride 2 -> 1"),
    ("shufflenetv2", lambda c, n: _tv("shufflenet_v2_x1_0", n), "conv1.0", ("maxpool",), "conv5.0",
     "ShuffleNetV2 (1.0x)", "torchvision (shufflenet_v2_x1_0)", "stem stride 2 -> 1, no max-pool"),
    ("squeezenet", lambda c, n: _tv("squeezenet1_1", n), "features.0", (), "features.12", "SqueezeNet (1.1)",
     "torchvision (squeezenet1_1)", "stem stride 2 -> 1"),
    ("mnasnet", lambda c, n: _tv("mnasnet1_0", n), "layers.0", (), "layers.14", "MnasNet (1.0)",
     "torchvision (mnasnet1_0)", "stem stride 2 -> 1"),
]


def _stem_only_factory(builder, stem: str, pools: tuple[str, ...]):
    def factory(in_channels=3, num_classes=10, image_size=224, small=False):
        return _stem(builder(in_channels, num_classes), stem, in_channels, small, pools)

    return factory


_PRETRAINED = {
    "alexnet": "torchvision:alexnet",
    "resnet18": "torchvision:resnet18",
    "resnet34": "torchvision:resnet34",
    "resnet50": "torchvision:resnet50",
    "senet34": "timm:seresnet34",
    "resnext50": "torchvision:resnext50_32x4d",
    "densenet121": "torchvision:densenet121",
    "efficientnetv2_s": "torchvision:efficientnet_v2_s",
    "mobilenetv2": "torchvision:mobilenet_v2",
    "shufflenetv2": "torchvision:shufflenet_v2_x1_0",
    "squeezenet": "torchvision:squeezenet1_1",
    "mnasnet": "torchvision:mnasnet1_0",
}

for _name, _builder, _stem_conv, _pools, _default, _paper, _source, _small in _STEM_ONLY:
    register_model(_name, source=_source, default_layers=_default, paper_name=_paper, small_variant=_small,
                   pretrained=_PRETRAINED[_name])(_stem_only_factory(_builder, _stem_conv, _pools))
