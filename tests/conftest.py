import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

os.environ.setdefault("MODEL_DOCTOR_QUIET", "1")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core: one torch thread each (inherited by the benchmark
    # subprocesses through OMP_NUM_THREADS), so the workers do not fight over the cores
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


class ResidualNet(nn.Module):
    """Conv stem, one residual block whose skip goes around the diagnosed conv, BN, in-place ReLU."""

    def __init__(self, in_channels=1, num_classes=3, width=4):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        self.conv1 = nn.Conv2d(width, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.relu = nn.ReLU(inplace=True)
        self.head = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.stem(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.conv2(out)
        out = self.relu(out + x)
        return self.head(out.mean((2, 3)))


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model


def self_labelled(model: nn.Module, n: int = 24, shape=(1, 8, 8), seed: int = 0, dtype=torch.float64) -> TensorDataset:
    """Random images labelled with the model's own prediction, so every sample is 'correct'.

    The last linear layer's bias is centred on these images first, so every class gets samples.
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=g, dtype=dtype)
    was = model.training
    model.eval()
    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]
    with torch.no_grad():
        logits = model(x)
        if head.bias is not None:
            head.bias -= logits.median(0).values
        y = model(x).argmax(1)
    model.train(was)
    return TensorDataset(x, y)


@pytest.fixture
def shared_data() -> Path:
    if not (SHARED_DATA / "FashionMNIST" / "raw").is_dir():
        pytest.skip(f"needs ../shared/data (not found at {SHARED_DATA}); a fresh clone has no shared/ folder")
    return SHARED_DATA


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The demo at test size, run once for every test that reads its outputs: ``(folder, result)``."""
    from model_doctor.demo import run_demo

    root = tmp_path_factory.mktemp("demo") / "demo"
    result = run_demo(str(root), epochs=20, treat_epochs=1, shortcut_epochs=3, shortcut_treat_epochs=1,
                      shortcut_seeds=(0,))
    return root, result


def pytest_collection_modifyitems(items):
    """Tests that read the session's demo run share one xdist worker, so the demo runs once."""
    for item in items:
        if "demo_run" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.xdist_group("demo"))
