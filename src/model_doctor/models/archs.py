"""Architectures neither torchvision nor timm provides in the paper's form.

- ``WideResNet`` — WRN-28-10 for CIFAR-size images (Zagoruyko & Komodakis, "Wide Residual
  Networks", BMVC 2016): 3 groups of (28-4)/6 = 4 pre-activation basic blocks, widths
  16k/32k/64k with k = 10, dropout off.
- ``SimpleNetV1`` — SimpleNet-v1 (Hasanpour et al., "Lets keep it simple, Using simple
  architectures to outperform deeper and more complex architectures", 2016): 13 conv layers,
  3x3 (two 1x1), BatchNorm + ReLU, max-pooling, global max pool, one linear layer.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import nn

__all__ = ["WideResNet", "SimpleNetV1"]


class _WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None if (cin == cout and stride == 1) else nn.Conv2d(cin, cout, 1, stride, bias=False)

    def forward(self, x):
        o = F.relu(self.bn1(x))
        y = self.conv1(o)
        y = self.conv2(F.relu(self.bn2(y)))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    """WRN-depth-k for small images (stride-1 3x3 stem); 32x32 inputs end at 8x8 maps."""

    def __init__(self, depth: int = 28, widen: int = 10, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WideResNet depth={depth}; use 6n+4 (e.g. 28)")
        n = (depth - 4) // 6
        w = [16, 16 * widen, 32 * widen, 64 * widen]
        self.conv1 = nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False)
        layers = []
        for g, stride in zip(range(3), (1, 2, 2)):
            blocks = [_WideBlock(w[g] if i == 0 else w[g + 1], w[g + 1], stride if i == 0 else 1) for i in range(n)]
            layers.append(nn.Sequential(*blocks))
        self.block1, self.block2, self.block3 = layers
        self.bn = nn.BatchNorm2d(w[3])
        self.fc = nn.Linear(w[3], num_classes)

    def forward(self, x):
        x = self.block3(self.block2(self.block1(self.conv1(x))))
        return self.fc(F.relu(self.bn(x)).mean((2, 3)))


_SIMPLENET = [64, 128, 128, 128, 128, "M", 128, 128, 256, "M", 256, 256, "M", 512, "M", ("1x1", 2048), ("1x1", 256), "M", 256]


class SimpleNetV1(nn.Module):
    """SimpleNet-v1 (13 conv layers). ``small=True`` keeps CIFAR's 5 poolings for 32-px inputs;
    larger inputs get one extra stride-2 pooling after the first block per doubling above 64 px."""

    def __init__(self, in_channels: int = 3, num_classes: int = 10, image_size: int = 32):
        super().__init__()
        layers: list[nn.Module] = []
        c = in_channels
        extra_pools = 0
        size = image_size
        while size > 64:
            extra_pools += 1
            size //= 2
        for _ in range(extra_pools):
            layers.append(nn.MaxPool2d(2))
        for item in _SIMPLENET:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
                continue
            k = 1 if isinstance(item, tuple) else 3
            out: int = item[1] if isinstance(item, tuple) else item  # type: ignore[assignment]  # a table of ints and (1x1, int)
            layers += [nn.Conv2d(c, out, k, padding=k // 2), nn.BatchNorm2d(out, eps=1e-5, momentum=0.05),
                       nn.ReLU(inplace=True)]
            c = out
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Linear(c, num_classes)

    def forward(self, x):
        x = self.features(x)
        return self.classifier(F.adaptive_max_pool2d(x, 1).flatten(1))
