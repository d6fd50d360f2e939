"""``ProtectedModel``: the golden integer model executed node by node under a per-layer protection scheme map.

``ProtectedModel(gm, schemes)`` wraps a ``GoldenModel`` (``sanitas.golden``). ``schemes`` is one scheme spec for
every node or a per-layer map, so selective protection is configuration:

* a spec is a string ``"sanity+dmr"`` (components joined by ``+``: ``none``, ``sanity`` (lazy location),
  ``sanity:eager``, ``dmr`` (= the DMR-only baseline when alone), ``tmr``, ``sanity-check``, ``clip``), a scheme
  class or instance (``Sanity``, ``DMR``, ...), or a tuple of them;
* a map is ``{"default": spec, "<node name | fnmatch pattern | op:<op>>": spec, ...}`` (exact names win, then
  patterns in the given order), e.g. loaded from a JSON/YAML file with ``load_scheme_map``.

Per node the highest-priority guard of its schemes computes it (tmr > sanity > sanity-check > dmr duplicate >
plain), a range restriction (clip) post-processes it, and with DMR every read is verified against the
producer's checkpoint checksum and a node whose check cannot be satisfied is re-executed from its
checkpointed inputs (``retries`` times). A node still uncorrectable after that whose guard keeps a trusted image
(the sanity guards) is **escalated**: its memory is reloaded and it is recomputed once (``Report.escalations``;
``escalate=False`` turns this off). After every inference the **patrol** verifies and repairs the next
``patrol`` codewords of the sanity-protected parameter memory (``patrol.py``; ``scrub_all()`` does all of them
on demand). ``run(xq, hook)`` returns the int32 logits and a ``Report`` (detected, located, corrected,
repaired, rolled back, uncorrectable, escalations, scrubbed words, ...). Fault-free, every scheme returns
exactly ``gm.run_int(xq)`` and raises no alarm. ``hook(node, site, array)`` has the golden signature and sites
(input, weight, bias, acc, output) plus the protection's own (``base.STATE_SITES``); ``state_sites()`` lists
the latter for fault campaigns.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import SanitasError
from ..models.ops import spec
from .base import Memory, NoProtection, PlainGuard, Report, Scheme, call_hook, checksum
from .clip import Clip, calibrate
from .dmr import DMR
from .patrol import Patrol
from .sanity import Sanity
from .sanity_check import SanityCheck
from .tmr import TMR

SCHEMES = {"none": NoProtection, "sanity": Sanity, "dmr": DMR, "tmr": TMR, "sanity-check": SanityCheck,
           "clip": Clip}
ALIASES = {"dmr-only": "dmr", "sanity_check": "sanity-check", "sanitycheck": "sanity-check"}


def parse_scheme(spec) -> tuple:
    """A scheme spec -> tuple of ``Scheme`` instances (see the module doc)."""
    if isinstance(spec, Scheme):
        return (spec,)
    if isinstance(spec, type) and issubclass(spec, Scheme):
        return (spec(),)
    if isinstance(spec, (tuple, list)):
        out = ()
        for s in spec:
            out += parse_scheme(s)
        return out
    if not isinstance(spec, str) or not spec.strip():
        raise SanitasError(f"bad protection scheme {spec!r}")
    out = []
    for part in spec.strip().lower().split("+"):
        name, _, opt = part.strip().partition(":")
        name = ALIASES.get(name, name)
        if name not in SCHEMES:
            raise SanitasError(f"unknown protection scheme '{part}' (choose from "
                               f"{', '.join(list(SCHEMES) + ['sanity:eager', 'dmr-only'])}, joined by '+')")
        if name == "sanity":
            if opt not in ("", "lazy", "eager"):
                raise SanitasError(f"sanity option must be lazy or eager, got '{opt}'")
            out.append(Sanity(lazy=(opt != "eager")))
        elif opt:
            raise SanitasError(f"scheme '{name}' takes no option (got '{opt}')")
        elif name != "none":
            out.append(SCHEMES[name]())
    return tuple(out)


def scheme_name(schemes: tuple) -> str:
    return "+".join(repr(s) for s in schemes) or "none"


def named_specs(schemes) -> list[tuple[str, object]]:
    """Scheme specs -> [(name, spec)]: strings name themselves, a dict {name: spec} names per-layer maps."""
    if isinstance(schemes, dict):
        return list(schemes.items())
    return [(s if isinstance(s, str) else scheme_name(parse_scheme(s)), s) for s in schemes]


def load_scheme_map(path) -> dict:
    """Read a per-layer scheme map from JSON or YAML: ``{"default": "sanity+dmr", "fc": "tmr", ...}``."""
    p = Path(path)
    if not p.exists():
        raise SanitasError(f"per-layer scheme file not found: {p}")
    try:
        if p.suffix in (".yaml", ".yml"):
            import yaml
            d = yaml.safe_load(p.read_text())
        else:
            d = json.loads(p.read_text())
    except Exception as e:  # noqa: BLE001
        raise SanitasError(f"{p}: cannot parse per-layer scheme map ({type(e).__name__})") from None
    if not isinstance(d, dict) or not all(isinstance(v, str) for v in d.values()):
        raise SanitasError(f"{p}: per-layer scheme map must map layer names/patterns to scheme strings")
    return d


def resolve_map(gm, schemes) -> dict:
    """Node name -> tuple of schemes, from a spec or a per-layer map."""
    if not isinstance(schemes, dict):
        s = parse_scheme(schemes)
        return {n.name: s for n in gm.nodes}
    default = parse_scheme(schemes.get("default", "none"))
    rules = [(k, parse_scheme(v)) for k, v in schemes.items() if k != "default"]
    names = {n.name for n in gm.nodes}
    for k, _ in rules:
        if k in names or k.startswith("op:") or any(ch in k for ch in "*?["):
            continue
        raise SanitasError(f"per-layer scheme map: no layer named '{k}'")
    out = {}
    for n in gm.nodes:
        hit = next((s for k, s in rules if k == n.name), None)
        if hit is None:
            hit = next((s for k, s in rules if (k.startswith("op:") and n.op == k[3:])
                        or fnmatch.fnmatchcase(n.name, k)), default)
        out[n.name] = hit
    return out


@dataclass
class NodePlan:
    """How one node runs: its compute guard, optional post-processor, DMR verification and retries."""
    schemes: tuple
    guard: object
    post: object = None
    verify_inputs: bool = False
    rollback: bool = False
    retries: int = 0

    @property
    def name(self) -> str:
        return scheme_name(self.schemes)


class ProtectedModel:
    """A golden model under protection. ``gm``: a ``GoldenModel``, or a trained Brevitas ``QNet`` whose golden
    twin is exported (the protected computation is always the exact integer one). ``calib``: int8 images
    (N, C, H, W) for the clip bounds (only needed when a ``clip`` scheme is used); ``retries``: DMR
    re-executions per node (default: the DMR scheme's); ``patrol``: parameter codewords scrubbed after each
    inference (0: off); ``escalate``: reload a layer that stays uncorrectable from its trusted image."""

    def __init__(self, gm, schemes="sanity+dmr", calib=None, retries: int | None = None, patrol: int = 4,
                 escalate: bool = True):
        from ..golden import GoldenModel, export_golden
        if not isinstance(gm, GoldenModel):
            gm = export_golden(gm)
        self.gm = gm
        env = gm.run_int(np.zeros((1,) + tuple(gm.input_shape), dtype=np.int64), return_all=True)
        self.shapes = {k: v.shape for k, v in env.items()}         # batch-1 output shape of every node
        self.scheme_map = resolve_map(gm, schemes)
        uses_clip = any(isinstance(s, Clip) and s.bounds is None for v in self.scheme_map.values() for s in v)
        self.clip_bounds = calibrate(gm, np.asarray(calib)) if (uses_clip and calib is not None) else None
        self.plans: dict[str, NodePlan] = {}
        for n in gm.nodes:
            ss = self.scheme_map[n.name]
            cands = [(s.priority, i, s) for i, s in enumerate(ss)]
            guard = None
            for _, _, s in sorted(cands, key=lambda t: (-t[0], t[1])):
                guard = s.guard(self, n)
                if guard is not None:
                    break
            post = next((p for p in (s.post(self, n) for s in ss) if p is not None), None)
            rb = [s for s in ss if s.rollback]
            self.plans[n.name] = NodePlan(ss, guard or PlainGuard(self, n), post,
                                          any(s.verify_inputs for s in ss), bool(rb),
                                          (retries if retries is not None else max(s.retries for s in rb)) if rb else 0)
        self._memories = self.memories()
        self.escalate = escalate
        self.patrol = Patrol([p.guard for p in self.plans.values() if hasattr(p.guard, "patrol_lines")], patrol)

    # ------------------------------------------------------------------ introspection
    def describe(self) -> dict:
        """Node name -> (op, scheme string, guard class name)."""
        return {n.name: (n.op, self.plans[n.name].name, type(self.plans[n.name].guard).__name__)
                for n in self.gm.nodes}

    def memory(self, layer: str):
        """The parameter memory of a conv/linear node (``.arrays``: weight, bias, the scheme's rows)."""
        return self.plans[layer].guard.mem

    def memories(self) -> list:
        """Every ``Memory`` of the model (parameters, sanity rows, TMR replicas, clip bounds)."""
        out = []
        for p in self.plans.values():
            for obj in (p.guard, getattr(p.guard, "inner", None), p.post):
                for attr in ("mem", "rmem"):
                    m = getattr(obj, attr, None) if obj is not None else None
                    if isinstance(m, Memory) and all(m is not o for o in out):
                        out.append(m)
        return out

    def reset(self) -> None:
        """Restore every memory to its fault-free contents (undo injected faults and repairs)."""
        for m in self._memories:
            m.reset()
        self.patrol.reset()

    def scrub_all(self, report: Report | None = None) -> Report:
        """Patrol every codeword of the protected parameter memory now (repairs; escalates what it cannot)."""
        rep = report if report is not None else Report()
        self.patrol.sweep(rep)
        return rep

    def state_sites(self) -> list:
        """Fault sites of the protection's own state: [(site, layer, shape, bits, signed, batched)]."""
        out = []
        for n in self.gm.nodes:
            p, shp = self.plans[n.name], self.shapes[n.name]
            st = list(p.guard.state(shp))
            if p.post is not None:
                st += p.post.state(shp)
            if p.rollback:
                st += DMR.state(n, shp)
            out += [(s, n.name) + tuple(rest) for s, *rest in st]
        return out

    # ------------------------------------------------------------------ execution
    def run(self, xq, hook=None) -> tuple[np.ndarray, Report]:
        """Protected inference on int8 inputs ``xq`` (N, C, H, W): (int32 logits (N, classes) as int64, Report)."""
        rep = Report()
        self._xq = np.asarray(xq, dtype=np.int64)
        env, csum = {}, {}
        for n in self.gm.nodes:
            self._exec(n, env, csum, hook, rep)
        out = self.gm.output_node
        y = self._verify(None, out.name, env[out.name], env, csum, hook, rep)   # the host's read of the logits
        self._xq = None
        self.patrol.step(rep)                                   # between inferences: k codewords
        return y, rep

    def predict(self, x, hook=None) -> tuple[np.ndarray, Report]:
        """Float images -> (int logits, Report)."""
        return self.run(self.gm.quantize_input(x), hook)

    def _exec(self, n, env, csum, hook, rep: Report) -> None:
        plan = self.plans[n.name]
        ok = False
        for attempt in range(plan.retries + 1):
            if spec(n.op).is_source:
                raw = ins = [self._xq]
            else:
                raw = [env[i] for i in n.inputs]
                ins = [self._read(n, i, env, csum, hook, rep) for i in n.inputs]
            y, ok = plan.guard.compute(ins, raw, hook, rep)
            if plan.post is not None:
                y = plan.post.apply(y, hook, rep)
            if ok:
                break
            if attempt < plan.retries:
                rep.rolled_back += 1
                rep.note(n.name, plan.name, "rollback", attempt=attempt + 1)
        if not ok and self.escalate and hasattr(plan.guard, "escalate"):
            plan.guard.escalate(rep, f"uncorrectable after scrub and {plan.retries} retries")
            y, ok = plan.guard.compute(ins, raw, hook, rep)
            if plan.post is not None:
                y = plan.post.apply(y, hook, rep)
        if not ok:
            rep.uncorrectable += 1
            rep.note(n.name, plan.name, "uncorrectable", retries=plan.retries)
        if plan.rollback:
            c = checksum(y)
            env[n.name] = call_hook(hook, n, "checkpoint", y)
            csum[n.name] = call_hook(hook, n, "checksum", c)
        else:
            env[n.name] = y

    def _read(self, n, src: str, env, csum, hook, rep: Report) -> np.ndarray:
        """Node ``n`` reads checkpoint ``src``: verified against its checksum under DMR (rollback on mismatch)."""
        r = call_hook(hook, n, "input", env[src])
        if not self.plans[n.name].verify_inputs:
            return r
        return self._verify(n, src, r, env, csum, hook, rep)

    def _verify(self, n, src, r, env, csum, hook, rep):
        if src not in csum or np.array_equal(checksum(r), csum[src]):
            return r
        who = n.name if n is not None else "host"
        plan = self.plans[n.name] if n is not None else self.plans[src]
        rep.detected += 1
        rep.note(who, "dmr", "detected", check=f"checksum of {src}")
        for attempt in range(max(plan.retries, 1)):
            rep.rolled_back += 1
            if attempt == 0:       # re-read: a fault on the read path is gone
                rep.note(who, "dmr", "rollback", action=f"re-read {src}")
                r = call_hook(hook, n, "input", env[src]) if n is not None else env[src]
            else:                  # re-execute the producer from its own checkpoints
                rep.note(who, "dmr", "rollback", action=f"re-execute {src}")
                self._exec(self.gm.by_name[src], env, csum, hook, rep)
                r = env[src]
            if np.array_equal(checksum(r), csum[src]):
                return r
        rep.uncorrectable += 1
        rep.note(who, "dmr", "uncorrectable", check=f"checksum of {src}")
        return r


__all__ = ["ProtectedModel", "NodePlan", "parse_scheme", "scheme_name", "resolve_map", "load_scheme_map", "named_specs",
           "SCHEMES"]
