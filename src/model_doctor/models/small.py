"""Small CNNs for CPU-sized studies and tests, and WRN-10-1 (the paper's WRN family at CPU size)."""

from __future__ import annotations

from torch import nn

from .registry import register_model

__all__ = ["SmallCNN"]


class SmallCNN(nn.Module):
    """Three conv blocks (conv-BN-ReLU, max-pool after the first two), global average pool, linear.

    Small enough to train on CPU in about a minute on 32x32 digits; ``features.8`` is its last
    conv layer (the default layer to diagnose).
    """

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.BatchNorm2d(2 * w), nn.ReLU(inplace=True), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1), nn.BatchNorm2d(4 * w), nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(4 * w, num_classes)

    def forward(self, x):
        return self.classifier(self.pool(self.features(x)).flatten(1))


@register_model("smallcnn", default_layers="features.8", paper_name="(small 3-conv CNN)")
def smallcnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 32, small: bool | None = None) -> nn.Module:
    return SmallCNN(in_channels, num_classes, width=32)


@register_model("tinycnn", default_layers="features.8", paper_name="(tiny 3-conv CNN for tests)")
def tinycnn(in_channels: int = 1, num_classes: int = 10, image_size: int = 32, small: bool | None = None) -> nn.Module:
    return SmallCNN(in_channels, num_classes, width=8)


@register_model("wrn10_1", default_layers="block3.0.conv2", paper_name="(WideResNet-10-1: the paper's WRN family at CPU size)")
def wrn10_1(in_channels: int = 1, num_classes: int = 10, image_size: int = 32, small: bool | None = None) -> nn.Module:
    from .archs import WideResNet

    return WideResNet(10, 1, in_channels, num_classes)
