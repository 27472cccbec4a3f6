"""The layers of docs/architecture.md, enforced: a module imports only from its own layer or below
(function-level imports included), so no cycle can form between the packages."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[2] / "src"

#: the picture in docs/architecture.md, bottom (0) to top
LAYERS = [
    {"io", "hooks", "precision", "progress", "distributed"},
    {"noise", "split", "rundir"},
    {"gradients"},
    {"models", "data"},
    {"layers"},
    {"diagnosis", "training"},
    {"config", "experiment", "analysis"},
    {"study", "summary", "validation", "weights"},
    {"treatment"},
    {"runtime", "report"},
    {"treating"},
    {"jobs", "reproduce"},
    {"demo"},
    {"cli"},
    {"__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}


def _group(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "model_doctor"


def _imports(path: Path) -> set[str]:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    package = parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[: len(package) - (node.level - 1)]
            found.add(".".join(base + ([node.module] if node.module else [])))
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("model_doctor"):
            found.add(node.module)  # type: ignore[arg-type]
    return found


def test_every_group_has_a_layer():
    groups = {_group(".".join(p.relative_to(SRC).with_suffix("").parts)) for p in (SRC / "model_doctor").rglob("*.py")}
    assert groups - {"model_doctor", "__init__"} <= set(RANK), sorted(groups - set(RANK))


def test_imports_go_down_the_layers_only():
    bad = []
    for path in (SRC / "model_doctor").rglob("*.py"):
        mod = ".".join(path.relative_to(SRC).with_suffix("").parts)
        src = _group(mod)
        if src in ("model_doctor", "__init__"):
            continue  # the package root re-exports the public API
        for target in _imports(path):
            dst = _group(target)
            if dst in ("model_doctor", src):
                continue  # __version__ from the root; a package's own modules
            if RANK[dst] > RANK[src] or (RANK[dst] == RANK[src]):
                bad.append(f"{mod} imports {target} ({src} is layer {RANK[src]}, {dst} layer {RANK[dst]})")
    assert not bad, "\n".join(sorted(bad))
