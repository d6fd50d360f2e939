"""Derived networks of the search: genotype -> ordinary Brevitas INT8 ``QNet`` (FTT-NAS sec. 4: the final nets).

``build_from_genotype(spec)`` is what ``sanitas.models.build_from_spec`` calls for a spec holding a
``"genotype"``, so checkpoints of derived nets load like zoo checkpoints and flow into golden / protect / hls /
rtl unchanged. spec = {"name": "ftt_net", "genotype": {...}, "space": SpaceConfig dict, "in_shape": [C, H, W],
"num_classes": K, "prune": true}; "prune" (written since derived nets drop the dead pre-processing of a cell
input no edge reads) is absent from older checkpoints, which keep that layout.

``derive_topk`` picks the k best distinct genotypes of a search history (by reward, ties broken by fewer MACs).
"""
from __future__ import annotations

from ..errors import SanitasError
from ..models.graph import QNet
from ..models.ops import spec
from .ops import Emitter, emit_network, init_head, init_weights
from .space import Genotype, SearchSpace, SpaceConfig


def genotype_spec(genotype: Genotype, space: SpaceConfig, in_shape, num_classes: int, name: str = "ftt_net") -> dict:
    """The ``QNet.spec`` of a derived net (JSON-able)."""
    return {"name": name, "genotype": genotype.to_dict(), "space": space.to_dict(),
            "in_shape": [int(v) for v in in_shape], "num_classes": int(num_classes), "prune": True}


def emit_derived(genotype: Genotype, space: SpaceConfig, in_shape, num_classes: int, dry: bool = True,
                 prune: bool = True) -> Emitter:
    """Node list + per-layer shapes/MACs of a derived net; ``dry``: without building any module (fast);
    ``prune``: no pre-processing of a cell input nothing reads (``ops.emit_network``; False: the layout of derived
    checkpoints written before pruning, whose spec has no "prune")."""
    ss = SearchSpace(space)
    ss.check(genotype)
    if not ss.valid(genotype):
        raise SanitasError(f"genotype has a cell without live nodes: {genotype.key()}")
    return emit_network(Emitter(dry=dry), space, genotype, tuple(in_shape), num_classes, prune=prune)


def build_from_genotype(spec: dict) -> QNet:
    """Build the derived INT8 net of ``spec`` (see module doc); fresh He-initialised weights, fixed sum pools."""
    try:
        g = Genotype.from_dict(spec["genotype"])
        space = SpaceConfig.from_dict(spec["space"])
        in_shape, num_classes = tuple(spec["in_shape"]), int(spec["num_classes"])
    except KeyError as e:
        raise SanitasError(f"derived-net spec lacks {e}") from None
    prune = bool(spec.get("prune", False))        # older checkpoints: every pre-processing kept
    em = emit_derived(g, space, in_shape, num_classes, dry=False, prune=prune)
    net = QNet(em.nodes, em.b.modules, {"name": spec.get("name", "ftt_net"), "genotype": g.to_dict(),
                                        "space": space.to_dict(), "in_shape": list(in_shape),
                                        "num_classes": num_classes, "prune": prune})
    init_weights(net.layers.values())    # QNet's He-everywhere init -> gain-aware init, fixed sum pools
    init_head(net.module_of(net.output_node), em.pooled_positions)
    return net


def build_derived(genotype: Genotype, space: SpaceConfig, in_shape, num_classes: int, name: str = "ftt_net") -> QNet:
    return build_from_genotype(genotype_spec(genotype, space, in_shape, num_classes, name))


def count_params(net) -> int:
    """Trainable parameters of conv/linear layers (weights + biases; quantiser scales not counted)."""
    tot = 0
    for n in net.nodes:
        if spec(n.op).has_weights and not n.attrs.get("sum_pool"):
            m = net.module_of(n)
            tot += m.weight.numel() + (m.bias.numel() if m.bias is not None else 0)
    return tot


def derive_topk(history: list[dict], k: int) -> list[dict]:
    """The ``k`` best distinct genotypes of ``history`` entries {"genotype", "reward", "macs", ...}: for a
    genotype seen several times the mean reward counts (the supernet changes while the search runs)."""
    agg: dict[str, dict] = {}
    for h in history:
        if h.get("valid") is False:
            continue
        key = Genotype.from_dict(h["genotype"]).key()
        a = agg.setdefault(key, {"genotype": h["genotype"], "rewards": [], "macs": h.get("macs", 0),
                                 "first": len(agg)})
        a["rewards"].append(float(h["reward"]))
    rows = [dict(genotype=a["genotype"], reward=sum(a["rewards"]) / len(a["rewards"]), seen=len(a["rewards"]),
                 macs=a["macs"], first=a["first"]) for a in agg.values()]
    rows.sort(key=lambda r: (-r["reward"], r["macs"], r["first"]))
    return rows[:k]
