"""Plain-text tables the jobs print (the report draws the same numbers as figures)."""

from __future__ import annotations

from typing import Any

from ..runtime import pct

__all__ = ["reliance_table"]


def reliance_table(rels: dict[str, dict[str, Any]], classes: list[str] | None = None) -> str:
    """Per class, for each model: background-swap accuracy (on another class's background, on its
    own class's, and with the object's colour matched to the other image's object) and
    background-only accuracy (a plain text table: which classes lean on their background, in
    either direction, or on a cast over the whole image)."""
    first = next(iter(rels.values()))["per_class"]
    names = list(rels)
    head = "class".ljust(16) + "".join(f"{n[:10] + ' swap':>17}{n[:10] + ' own':>16}{n[:10] + ' matched':>20}"
                                       f"{n[:10] + ' bg-only':>20}" for n in names)
    lines = ["background reliance per class (swap: label kept on another class's background; own: on another image "
             "of its own class; matched: swap with the object's colour matched to the other image's object; bg-only: "
             "label from the background alone, lower is better)", head]
    for c in first:
        name = (classes[int(c)] if classes and int(c) < len(classes) else str(c))[:15]
        row = {n: rels[n]["per_class"][c] for n in names}
        lines.append(name.ljust(16) + "".join(f"{pct(row[n]['swap_acc']):>17}{pct(row[n].get('same_swap_acc', float('nan'))):>16}"
                                              f"{pct(row[n].get('matched_swap_acc', float('nan'))):>20}"
                                              f"{pct(row[n]['bg_only_acc']):>20}" for n in names))
    return "\n".join(lines)
