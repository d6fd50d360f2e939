"""Cell-based search space of FT-NAS / FTT-NAS (Ning et al., TODAES 2021, sec. 4.1; DARTS/ENAS cells).

A network is a stem conv, ``cells`` cells (reduction cells at ``reductions``: stride 2, channels x2) and a
global-sum + linear head. Every cell has 2 input nodes (the outputs of the two previous cells, each
pre-processed by relu -> 1x1 conv -> int8) and ``nodes`` intermediate nodes; intermediate node j sums two edges,
each edge = (primitive, input) with input in [0, j+2) (0, 1 = cell inputs, k >= 2 = node k-2). The cell output
is the channel concat of its live nodes. A genotype fixes the edges of one normal and one reduction cell
(shared by all cells of that type), as in DARTS/ENAS.

Primitive sets (docs/architecture.md): feature faults {none, max_pool_3x3, avg_pool_3x3, skip_connect, sep_conv_3x3,
sep_conv_5x5, dil_conv_3x3, dil_conv_5x5}; weight faults add {relu_conv_bn_3x3, relu_conv_bn_5x5, conv_1x1}.
Spaces are named after the fault model they are searched under: ``mibb`` (feature set, MiBB feature faults,
alpha 0.5), ``adsaf`` (weight set, adSAF RRAM weight faults, alpha 0.2), ``bitflip`` (weight set, i.i.d. weight
bit flips, alpha 0.2).

"none" edges are dropped; a node with no live edge (all "none", or fed only by dead nodes) is dead and left
out of the concat (the supernet feeds zeros in its place, which computes the same function). A genotype with a
dead cell (no live node) is invalid.

The flat encoding used by the controllers is one integer per decision, in the order
[normal, reduce] x node j x edge e x (input, op) — ``SearchSpace.decisions()`` lists (kind, n_choices).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import SanitasError

FEATURE_PRIMITIVES = ("none", "max_pool_3x3", "avg_pool_3x3", "skip_connect", "sep_conv_3x3", "sep_conv_5x5",
                      "dil_conv_3x3", "dil_conv_5x5")
WEIGHT_PRIMITIVES = FEATURE_PRIMITIVES + ("relu_conv_bn_3x3", "relu_conv_bn_5x5", "conv_1x1")

# space name -> (primitive set, fault model name, reward alpha of FTT-NAS)
SPACE_PRESETS = {
    "mibb": (FEATURE_PRIMITIVES, "mibb", 0.5),
    "adsaf": (WEIGHT_PRIMITIVES, "adsaf", 0.2),
    "bitflip": (WEIGHT_PRIMITIVES, "bitflip", 0.2),
}

CELL_TYPES = ("normal", "reduce")


@dataclass
class SpaceConfig:
    """Shape of the cell network. The default is the small digits space; ``paper()`` is FTT-NAS's CIFAR space."""
    primitives: tuple = FEATURE_PRIMITIVES   # candidate ops of every edge
    cells: int = 3                  # number of cells
    nodes: int = 3                  # intermediate nodes ("steps") per cell, each with 2 edges
    channels: int = 8               # C of the first cell (doubles at every reduction cell)
    stem_multiplier: int = 2        # stem conv outputs stem_multiplier * C channels
    reductions: tuple = (1,)        # indices of the reduction cells (stride 2, channels x2)

    def __post_init__(self):
        self.primitives = tuple(self.primitives)
        self.reductions = tuple(int(r) for r in self.reductions)
        bad = [p for p in self.primitives if p not in WEIGHT_PRIMITIVES]
        if bad:
            raise SanitasError(f"unknown primitive(s) {bad} (choose from {', '.join(WEIGHT_PRIMITIVES)})")
        if self.cells < 1 or self.nodes < 1 or self.channels < 1 or self.stem_multiplier < 1:
            raise SanitasError("space: cells, nodes, channels and stem_multiplier must be >= 1")
        if any(r < 0 or r >= self.cells for r in self.reductions):
            raise SanitasError(f"space: reduction indices {self.reductions} outside 0..{self.cells - 1}")

    @classmethod
    def paper(cls, primitives=FEATURE_PRIMITIVES) -> "SpaceConfig":
        """FTT-NAS's CIFAR-10 space: 8 cells, C=20, stem x3, reductions at 2 and 5, 4 nodes."""
        return cls(tuple(primitives), cells=8, nodes=4, channels=20, stem_multiplier=3, reductions=(2, 5))

    @classmethod
    def preset(cls, name: str, **overrides) -> "SpaceConfig":
        if name not in SPACE_PRESETS:
            raise SanitasError(f"unknown space '{name}' (choose from {', '.join(SPACE_PRESETS)})")
        return cls(primitives=SPACE_PRESETS[name][0], **overrides)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["primitives"], d["reductions"] = list(self.primitives), list(self.reductions)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "SpaceConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise SanitasError(f"space: unknown key(s) {sorted(unknown)}")
        return cls(**d)

    @property
    def cell_types(self) -> tuple:
        """Cell types present in the network (a space without reductions has only normal cells)."""
        return CELL_TYPES if self.reductions else CELL_TYPES[:1]


@dataclass(frozen=True)
class Genotype:
    """Edges of the normal and the reduction cell: ``normal[2*j + e] = (op, input)`` of node j, edge e."""
    normal: tuple
    reduce: tuple = field(default=())

    def cell(self, kind: str) -> tuple:
        return self.normal if kind == "normal" else self.reduce

    def to_dict(self) -> dict:
        return {"normal": [[op, int(i)] for op, i in self.normal], "reduce": [[op, int(i)] for op, i in self.reduce]}

    @classmethod
    def from_dict(cls, d: dict) -> "Genotype":
        try:
            return cls(tuple((str(op), int(i)) for op, i in d["normal"]),
                       tuple((str(op), int(i)) for op, i in d.get("reduce", [])))
        except (KeyError, TypeError, ValueError) as e:
            raise SanitasError(f"malformed genotype ({type(e).__name__}: {e})") from None

    def key(self) -> str:
        """Compact, order-preserving text form (used as cache key and in tables)."""
        f = lambda c: " ".join(f"{op}<{i}" for op, i in c)  # noqa: E731
        return f"N[{f(self.normal)}] R[{f(self.reduce)}]"


def live_nodes(edges: tuple, n_nodes: int) -> list[bool]:
    """Liveness of each intermediate node of a cell: a node is live if an edge with op != none comes from a
    live input (cell inputs 0 and 1 are always live)."""
    live = [True, True]
    for j in range(n_nodes):
        live.append(any(op != "none" and live[i] for op, i in edges[2 * j:2 * j + 2]))
    return live[2:]


def live_edges(edges: tuple, n_nodes: int) -> list[list[tuple[int, str, int]]]:
    """Per node j the live edges as (edge index e, op, input)."""
    live = [True, True] + live_nodes(edges, n_nodes)
    return [[(e, op, i) for e, (op, i) in enumerate(edges[2 * j:2 * j + 2]) if op != "none" and live[i]]
            for j in range(n_nodes)]


class SearchSpace:
    """A ``SpaceConfig`` plus the genotype <-> decision-vector mapping used by the controllers."""

    def __init__(self, config: SpaceConfig):
        self.config = config
        self.primitives = tuple(config.primitives)

    def decisions(self) -> list[tuple[str, int]]:
        """(kind, number of choices) of every decision, in encoding order."""
        out = []
        for _ in self.config.cell_types:
            for j in range(self.config.nodes):
                for _e in range(2):
                    out.append(("input", j + 2))
                    out.append(("op", len(self.primitives)))
        return out

    def decode(self, vec) -> Genotype:
        vec = [int(v) for v in vec]
        dec = self.decisions()
        if len(vec) != len(dec):
            raise SanitasError(f"decision vector of length {len(vec)}, expected {len(dec)}")
        cells, k = [], 0
        for _ in self.config.cell_types:
            edges = []
            for _j in range(self.config.nodes):
                for _e in range(2):
                    inp, op = vec[k], vec[k + 1]
                    if not (0 <= inp < dec[k][1] and 0 <= op < dec[k + 1][1]):
                        raise SanitasError(f"decision out of range at position {k}")
                    edges.append((self.primitives[op], inp))
                    k += 2
            cells.append(tuple(edges))
        return Genotype(cells[0], cells[1] if len(cells) > 1 else ())

    def encode(self, g: Genotype) -> list[int]:
        self.check(g)
        vec = []
        for kind in self.config.cell_types:
            for op, i in g.cell(kind):
                vec += [int(i), self.primitives.index(op)]
        return vec

    def check(self, g: Genotype) -> None:
        """Raise ``SanitasError`` unless ``g`` fits this space (ops, inputs, edge counts)."""
        for kind in self.config.cell_types:
            edges = g.cell(kind)
            if len(edges) != 2 * self.config.nodes:
                raise SanitasError(f"genotype {kind} cell has {len(edges)} edges, space needs {2 * self.config.nodes}")
            for e, (op, i) in enumerate(edges):
                if op not in self.primitives:
                    raise SanitasError(f"genotype op '{op}' not in the space's primitives")
                if not 0 <= i < e // 2 + 2:
                    raise SanitasError(f"genotype {kind} node {e // 2} edge input {i} out of range")

    def valid(self, g: Genotype) -> bool:
        """Every used cell type has at least one live node."""
        return all(any(live_nodes(g.cell(k), self.config.nodes)) for k in self.config.cell_types)

    def size(self) -> int:
        """Number of distinct decision vectors (architectures, counting equivalent ones separately)."""
        n = 1
        for _, c in self.decisions():
            n *= c
        return n


def save_genotype(path, genotype: Genotype, space: SpaceConfig, extra: dict | None = None) -> Path:
    """Write ``genotype.json``: {"genotype": ..., "space": ..., **extra}."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    obj = {"format": "sanitas-genotype-1", "genotype": genotype.to_dict(), "space": space.to_dict()}
    obj.update(extra or {})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    tmp.replace(path)
    return path


def load_genotype(path) -> tuple[Genotype, SpaceConfig, dict]:
    p = Path(path)
    try:
        obj = json.loads(p.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise SanitasError(f"{p}: cannot read genotype ({type(e).__name__})") from None
    if not isinstance(obj, dict) or "genotype" not in obj or "space" not in obj:
        raise SanitasError(f"{p}: not a sanitas genotype file")
    return Genotype.from_dict(obj["genotype"]), SpaceConfig.from_dict(obj["space"]), obj
