"""Rate-based fault injectors at the torch/Brevitas level (FTT-NAS fault models), for training, search and campaigns.

``with inject(model, MiBB(1e-4), generator=g): out = model(x)`` registers forward hooks on every Brevitas
``QuantConv*``/``QuantLinear`` (and, for activation faults, every quantised activation) of ANY ``nn.Module``
(a ``QNet``, a NAS supernet, ...), resamples the faults on every forward pass from ``generator`` (a
``torch.Generator``: same seed, same faults) and removes the hooks on exit. All masks are drawn as whole
tensors (no Python loop over elements), on the generator's device.

Fault models (FTT-NAS, Ning et al. TODAES 2021; see docs/architecture.md, "References"):

* ``MiBB(p, bits=8)`` — MAC-i.i.d. bit-bias feature faults on every conv/linear output: an output element is
  faulty with probability ``q = 1 - (1 - p)^K`` (K = MACs per output = C_in/groups * kh * kw, or in_features);
  a faulty element gets ``± 2^j * step`` (j uniform in 0..bits-1, random sign) and is clamped to
  ``[-2^(bits-1) * step, (2^(bits-1) - 1) * step]``. ``step`` is the output's 8-bit dynamic fixed-point step
  of FTT-NAS: ``step = 2^(ceil(log2 max|y|) - (bits-1))`` over the tensor (detached). The fault is added as a
  detached constant, so gradients flow through the clean path unchanged.
* ``ADSAF(p=0.08, sa1_frac=0.163, per_bit=False)`` — RRAM stuck-at faults on weights. Each weight is a
  differential cell pair (``w = G+ - G-``, one side holds |w|, the other 0); each cell is faulty with
  probability p; a faulty cell is stuck-at-1 (driven to the maximum magnitude 2^(bits-1) - 1 LSBs) with
  probability ``sa1_frac`` and stuck-at-0 (its polarity's contribution zeroed) otherwise. ``per_bit=True``:
  the (bits-1) magnitude bits of a sign-magnitude weight are cells instead (SA1 sets, SA0 clears a bit).
  Faulty weights are detached constants: they get no gradient.
* ``BER(p, site="weight"|"act", bits=8)`` — independent flips of each bit of the two's-complement int8 weight
  (or of the int8/uint8 activation code) with probability p; straight-through gradient.

Integer values are read off Brevitas ``QuantTensor``s as ``value / scale`` (exact: power-of-two scales).
``Injection.stats`` counts faulty and total elements (or cells / bits) per fault model, for rate checks.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn as nn

from ..errors import SanitasError

BER_SITES = {"weight": False, "act": True}     # BER sites -> whether the site is an activation


def _brevitas():
    from brevitas.nn.quant_layer import QuantNonLinearActLayer, QuantWeightBiasInputOutputLayer
    from brevitas.quant_tensor import QuantTensor
    return QuantWeightBiasInputOutputLayer, QuantNonLinearActLayer, QuantTensor


def mac_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Brevitas weight layer (QuantConv*/QuantLinear) in ``model``."""
    wl, _, _ = _brevitas()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, wl)]


def act_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every quantised activation (QuantReLU, QuantIdentity, ...) in ``model``."""
    _, al, _ = _brevitas()
    return [(n, m) for n, m in model.named_modules() if isinstance(m, al)]


def macs_per_output(mod: nn.Module) -> int:
    """MACs that produce one output element: C_in/groups * prod(kernel) for convs, in_features for linears."""
    return int(mod.weight[0].numel())


def _rand(shape, gen, device, dtype=torch.float64):
    """Uniform [0, 1) of ``shape`` from ``gen`` (drawn on the generator's device, moved to ``device``)."""
    if gen is None:
        return torch.rand(shape, device=device, dtype=dtype)
    u = torch.rand(shape, generator=gen, device=gen.device, dtype=dtype)
    return u if u.device == torch.device(device) else u.to(device)


class _Counter:
    """Running faulty/total counts kept as tensors (no host sync per forward); read with ``.faulty``."""

    def __init__(self):
        self._faulty = 0
        self.total = 0
        self.calls = 0

    def add(self, mask: torch.Tensor, total: int | None = None):
        self._faulty = self._faulty + mask.sum()
        self.total += mask.numel() if total is None else total
        self.calls += 1

    @property
    def faulty(self) -> int:
        return int(self._faulty)

    @property
    def rate(self) -> float:
        return self.faulty / max(1, self.total)

    def __repr__(self):
        return f"faulty={self.faulty} total={self.total} calls={self.calls}"


def _int_of(qt) -> torch.Tensor:
    """Integer codes of a QuantTensor as float (exact: value / power-of-two scale, rounded)."""
    return torch.round(qt.value.detach() / qt.scale.detach())


# ------------------------------------------------------------------------------------------------ fault models
@dataclass
class MiBB:
    """Feature faults on every conv/linear output: per-MAC rate ``p``, ``±2^j*step`` bias, clamp (FTT-NAS)."""
    p: float = 1e-4
    bits: int = 8

    name = "mibb"

    def prob(self, mod) -> float:
        """Per-output fault probability 1 - (1 - p)^K (computed as -expm1(K log1p(-p)), exact for tiny p)."""
        return -math.expm1(macs_per_output(mod) * math.log1p(-self.p))

    def attach(self, model, inj: "Injection"):
        if not 0.0 <= self.p <= 1.0:
            raise SanitasError(f"MiBB rate p={self.p} must be in [0, 1]")
        _, _, QT = _brevitas()
        layers = mac_layers(model)
        if not layers:
            raise SanitasError("MiBB: the model has no Brevitas QuantConv/QuantLinear layer")
        cnt = inj.counter(self.name)
        nb = self.bits

        def hook(mod, args, out):
            v = out.value if isinstance(out, QT) else out
            q = self.prob(mod)
            with torch.no_grad():
                u = _rand(v.shape, inj.generator, v.device)               # (N, C, H, W) float64
                mask = u < q
                cnt.add(mask)
                code = torch.clamp((u / max(q, 1e-300) * (2 * nb)).floor(), 0, 2 * nb - 1)  # uniform 0..2nb-1
                j, neg = torch.div(code, 2, rounding_mode="floor"), code.remainder(2)
                vd = v.detach()
                amax = vd.abs().max().clamp_min(torch.finfo(vd.dtype).tiny)
                step = torch.exp2(torch.ceil(torch.log2(amax)) - (nb - 1))
                delta = torch.exp2(j).to(vd.dtype) * step * (1 - 2 * neg).to(vd.dtype)
                faulty = torch.clamp(vd + delta, -(2 ** (nb - 1)) * step, (2 ** (nb - 1) - 1) * step)
                d = torch.where(mask, faulty - vd, torch.zeros((), dtype=vd.dtype, device=vd.device))
            nv = v + d
            return out.set(value=nv) if isinstance(out, QT) else nv

        return [m.register_forward_hook(hook) for _, m in layers]


@dataclass
class ADSAF:
    """RRAM stuck-at weight faults (differential pair per weight, or per magnitude bit); no gradient if faulty."""
    p: float = 0.08
    sa1_frac: float = 0.163
    per_bit: bool = False
    bits: int = 8

    name = "adsaf"

    def faulty_int(self, w: torch.Tensor, gen) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Integer weights ``w`` (float holding ints, |w| <= 2^(bits-1)-1) -> (faulty ints, faulty-weight mask,
        faulty-cell mask of shape (2, *w.shape) or (*w.shape, bits-1)).

        One uniform u per cell: u < p*sa1_frac -> stuck-at-1, p*sa1_frac <= u < p -> stuck-at-0."""
        p1, p0 = self.p * self.sa1_frac, self.p
        wmax = 2 ** (self.bits - 1) - 1
        if not self.per_bit:
            u = _rand((2,) + tuple(w.shape), gen, w.device)              # (2, *w.shape): cells G+, G-
            sa1, bad = u < p1, u < p0
            gp, gn = w.clamp(min=0), (-w).clamp(min=0)
            gp = torch.where(sa1[0], torch.full_like(gp, wmax), torch.where(bad[0], torch.zeros_like(gp), gp))
            gn = torch.where(sa1[1], torch.full_like(gn, wmax), torch.where(bad[1], torch.zeros_like(gn), gn))
            return gp - gn, bad[0] | bad[1], bad
        nb = self.bits - 1                                                # magnitude bits
        u = _rand(tuple(w.shape) + (nb,), gen, w.device)                 # (*w.shape, nb)
        weights = (2 ** torch.arange(nb, device=w.device, dtype=torch.int64))
        set_m = ((u < p1).long() * weights).sum(-1)
        clr_m = (((u >= p1) & (u < p0)).long() * weights).sum(-1)
        mag = w.abs().long()
        mag = (mag & ~clr_m) | set_m
        bad = u < p0
        return (torch.sign(w) + (w == 0)).to(w.dtype) * mag.to(w.dtype), bad.any(-1), bad

    def attach(self, model, inj: "Injection"):
        if not 0.0 <= self.p <= 1.0 or not 0.0 <= self.sa1_frac <= 1.0:
            raise SanitasError(f"ADSAF rates must be in [0, 1] (p={self.p}, sa1_frac={self.sa1_frac})")
        _, _, QT = _brevitas()
        layers = mac_layers(model)
        if not layers:
            raise SanitasError("ADSAF: the model has no Brevitas QuantConv/QuantLinear layer")
        cnt = inj.counter(self.name)

        def hook(proxy, args, out):
            if not isinstance(out, QT):
                return out
            with torch.no_grad():
                w = _int_of(out)
                wf, bad, cells = self.faulty_int(w, inj.generator)
                cnt.add(cells)
                fv = (wf * out.scale.detach()).to(out.value.dtype)
            # faulty weights are constants; the scale is detached too, so no gradient reaches them through the
            # weight statistics (max |w|) that set the power-of-two scale either
            return out.set(value=torch.where(bad, fv, out.value), scale=out.scale.detach())

        return [m.weight_quant.register_forward_hook(hook) for _, m in layers]


@dataclass
class BER:
    """Independent per-bit flips of int8 weights (site="weight") or activation codes (site="act") at rate p."""
    p: float
    site: str = "weight"
    bits: int = 8

    name = "ber"

    def flip_int(self, a: torch.Tensor, bits: int, signed: bool, gen) -> tuple[torch.Tensor, int]:
        """Integer codes ``a`` (float holding ints) -> (codes with flipped bits, number of flipped bits).

        Exact two-stage sampling, O(numel) + O(faulty elements * bits) randoms: an element has at least one flip
        with probability q = 1 - (1-p)^bits; for those elements the bit pattern is drawn with per-bit rate p
        conditioned on being non-zero (first flipped bit by inverse CDF, the bits above it independently)."""
        q = -math.expm1(bits * math.log1p(-self.p)) if self.p < 1 else 1.0
        flat = a.reshape(-1)
        hit = torch.nonzero(_rand(flat.shape, gen, a.device) < q).squeeze(1)     # (K,) faulty elements
        k = int(hit.numel())
        if k == 0:
            return a, 0
        # first flipped bit F: P(F <= i | >= 1 flip) = (1 - (1-p)^(i+1)) / q (inverse CDF); bits above F: Bernoulli(p)
        ar = torch.arange(bits, device=a.device)
        cdf = -torch.expm1((ar + 1).double() * math.log1p(-min(self.p, 1 - 1e-16))) / q            # (bits,)
        first = torch.searchsorted(cdf, _rand((k, 1), gen, a.device) * cdf[-1]).clamp(max=bits - 1)  # (K, 1)
        flips = ((_rand((k, bits), gen, a.device) < self.p) & (ar > first)) | (ar == first)   # (K, bits)
        xm = (flips.long() * (2 ** torch.arange(bits, device=a.device, dtype=torch.int64))).sum(-1)
        full = (1 << bits) - 1
        v = (flat[hit].long() & full) ^ xm
        if signed:
            v = v - ((v >> (bits - 1)) & 1) * (1 << bits)
        out = flat.clone()
        out[hit] = v.to(a.dtype)
        return out.reshape(a.shape), int(flips.sum())

    def attach(self, model, inj: "Injection"):
        if not 0.0 <= self.p <= 1.0:
            raise SanitasError(f"BER rate p={self.p} must be in [0, 1]")
        if self.site not in BER_SITES:
            raise SanitasError(f"unknown site '{self.site}' for BER (choose from weight, act)")
        _, _, QT = _brevitas()
        cnt = inj.counter(f"{self.name}:{self.site}")

        def hook(proxy, args, out):
            if not isinstance(out, QT):
                return out
            with torch.no_grad():
                a = _int_of(out)
                on_act = BER_SITES[self.site]
                bits = int(round(float(out.bit_width))) if on_act else self.bits
                signed = bool(out.signed) if on_act else True
                af, nflips = self.flip_int(a, bits, signed, inj.generator)
                cnt.add(torch.tensor(nflips), total=a.numel() * bits)
                d = ((af - a) * out.scale.detach()).to(out.value.dtype)
            return out.set(value=out.value + d)

        if self.site == "weight":
            layers = mac_layers(model)
            if not layers:
                raise SanitasError("BER: the model has no Brevitas QuantConv/QuantLinear layer")
            return [m.weight_quant.register_forward_hook(hook) for _, m in layers]
        layers = act_layers(model)
        if not layers:
            raise SanitasError("BER: the model has no Brevitas quantised activation")
        return [m.act_quant.register_forward_hook(hook) for _, m in layers]


FAULT_MODELS = {"mibb": MiBB, "adsaf": ADSAF, "ber": BER}


# ------------------------------------------------------------------------------------------------ context
class Injection:
    """Live injection: its hooks, the generator, and per-model counters (``stats``)."""

    def __init__(self, generator: torch.Generator | None):
        self.generator = generator
        self.stats: dict[str, _Counter] = {}
        self.handles: list = []

    def counter(self, name: str) -> _Counter:
        return self.stats.setdefault(name, _Counter())

    def remove(self):
        for h in self.handles:
            h.remove()
        self.handles = []


@contextmanager
def inject(model: nn.Module, *fault_models, generator: torch.Generator | None = None, enabled: bool = True):
    """Inject ``fault_models`` (MiBB / ADSAF / BER instances) into every forward of ``model`` inside the block.

    ``generator``: a ``torch.Generator`` (any device) for reproducible faults; None uses torch's global RNG.
    ``enabled=False`` makes the block a no-op (handy for ``with inject(m, fm, enabled=training):``).
    Yields an ``Injection`` whose ``stats[name]`` gives faulty/total counts over the block's forwards."""
    inj = Injection(generator)
    try:
        if enabled:
            for fm in fault_models:
                inj.handles += fm.attach(model, inj)
        yield inj
    finally:
        inj.remove()


__all__ = ["MiBB", "ADSAF", "BER", "inject", "Injection", "FAULT_MODELS", "mac_layers", "act_layers",
           "macs_per_output"]
