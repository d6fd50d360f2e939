"""One typed, JSON/YAML-serialisable configuration for sanitas: one section per subcommand, every field commented
(docs/architecture.md, "Python package").

``Config`` holds the sections ``array`` (the accelerator geometry), ``data``, ``train``, ``golden``, ``hls``,
``csim``, ``rtl``, ``board``, ``campaign`` (``sanitas inject``), ``protect``, ``soak``, ``search``, ``plan`` and
``flow``. Each subcommand takes its argument defaults from its sections (``sanitas.commands._config``), so changing
a default is one edit here, and every subcommand accepts ``--config FILE`` to load them. ``Config.load(path)`` reads
YAML (``yaml.safe_load``) or JSON and checks every value against its field's annotation (int, float, bool, str,
Optional, Union, list/tuple of str or int, enums) and each section's own range checks: a malformed file, an
unknown section or key, or a wrongly typed value is ONE ``SanitasError`` line naming the file, section and key,
raised before any work starts.
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from .errors import SanitasError


def clog2(n: int) -> int:
    """Verilog ``$clog2``: the smallest w with 2**w >= n (0 for n <= 1)."""
    return (n - 1).bit_length() if n > 1 else 0


class ChecksumMode(str, Enum):
    """When the Hamming partial checksum columns of a sanity-protected layer run."""
    LAZY = "lazy"      # fault-free only the total checksum column runs; partials run on an alarm
    EAGER = "eager"    # total and partial columns run on every GEMM


def _int_field(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise SanitasError(f"array: {name} must be an int, got {value!r}")
    if value < minimum:
        raise SanitasError(f"array: {name} must be >= {minimum}, got {value}")


@dataclass(frozen=True)
class ArrayConfig:
    """The one geometry of the systolic accelerator, read by every level (docs/architecture.md, "ArrayConfig").

    It renders the HLS configuration header and the Verilog parameters, parameterises the cocotb benches and the
    board metadata, and gives the CLI defaults of ``sanitas rtl`` / ``csim`` / ``hls`` / ``flow``. Validated on
    construction: a bad value raises ``SanitasError`` with one line.
    """
    rows: int = 4                  # PE rows: GEMM output rows (output pixels) computed per pass
    cols: int = 4                  # PE columns: GEMM output columns (output channels) per pass, + checksum columns
    data_width: int = 8            # signed operand width, bits (INT8 weights and activations)
    acc_width: int = 32            # signed wrapping accumulator width, bits (INT32: the integer contract)
    max_k: int = 1024              # longest reduction one GEMM accepts (C_in/groups * kh * kw), sizes K counters
    checksums: ChecksumMode = ChecksumMode.LAZY   # lazy | eager: when the partial checksum columns run
    fault_injection: bool = True   # fault-injection ports compiled in (benches, replay); off for area / the board
    part: str = "xc7z020clg400-1"  # FPGA part the HLS/Vivado scripts target (pynq-z2's Zynq-7020)
    clock_mhz: float = 100.0       # target clock of the PL, MHz (HLS clock period = 1000 / clock_mhz ns)

    def __post_init__(self) -> None:
        _int_field("rows", self.rows, 1)
        _int_field("cols", self.cols, 1)
        _int_field("data_width", self.data_width, 2)
        _int_field("acc_width", self.acc_width, 2)
        _int_field("max_k", self.max_k, 1)
        try:
            object.__setattr__(self, "checksums", ChecksumMode(self.checksums))
        except ValueError:
            raise SanitasError(f"array: checksums must be one of lazy, eager, got {self.checksums!r}") from None
        if not isinstance(self.fault_injection, bool):
            raise SanitasError(f"array: fault_injection must be a bool, got {self.fault_injection!r}")
        if not isinstance(self.part, str) or not self.part:
            raise SanitasError(f"array: part must be a non-empty string, got {self.part!r}")
        if isinstance(self.clock_mhz, bool) or not isinstance(self.clock_mhz, (int, float)) or self.clock_mhz <= 0:
            raise SanitasError(f"array: clock_mhz must be a positive number, got {self.clock_mhz!r}")
        if self.acc_width < self.data_width + self.chk_width:
            raise SanitasError(
                f"array: acc_width must be >= 2*data_width + clog2(cols) + 1 = {self.data_width + self.chk_width} "
                f"(checksum product width), got {self.acc_width}")

    @property
    def chk_width(self) -> int:
        """Width of the total-checksum operand -sum_j B[k, j], bits: data_width + clog2(cols) + 1."""
        return self.data_width + clog2(self.cols) + 1

    @property
    def k_width(self) -> int:
        """Width of the run-time K input, bits: holds 0..max_k."""
        return max(1, self.max_k.bit_length())

    @property
    def data_min(self) -> int:
        """Smallest signed operand value, -2**(data_width - 1) (INT8: -128)."""
        return -(1 << (self.data_width - 1))

    @property
    def data_max(self) -> int:
        """Largest signed operand value, 2**(data_width - 1) - 1 (INT8: 127)."""
        return (1 << (self.data_width - 1)) - 1

    @property
    def latency(self) -> int:
        """Wavefront skew of the array, cycles: PE (i, j) runs reduction step kk in cycle kk + i + j; the
        checksum PE of the last row (j = cols) finishes in cycle K - 1 + rows - 1 + cols."""
        return self.rows + self.cols

    @property
    def clock_period_ns(self) -> float:
        """HLS / Vivado clock period, ns."""
        return 1000.0 / self.clock_mhz

    def to_dict(self) -> dict:
        """JSON-serialisable dict; ``ArrayConfig(**d)`` round-trips it."""
        d = dataclasses.asdict(self)
        d["checksums"] = self.checksums.value
        return d

    def tag(self) -> str:
        """Short folder name, e.g. ``r4_c4_d8_a32``."""
        return f"r{self.rows}_c{self.cols}_d{self.data_width}_a{self.acc_width}"


def _at_least(sec: str, name: str, value, minimum) -> None:
    if value is not None and value < minimum:
        raise SanitasError(f"{sec}: {name} must be >= {minimum}, got {value}")


def _one_of(sec: str, name: str, value, options) -> None:
    if value is not None and value not in options:
        raise SanitasError(f"{sec}: unknown {name} {value!r} (choose from {', '.join(options)})")


DATASETS = ("digits", "mnist", "cifar10")


@dataclass
class DataConfig:
    """[data]: the dataset every command that trains or reads a test split uses."""
    dataset: str = "digits"        # digits (bundled, offline) | mnist | cifar10
    data_dir: str | None = None    # folder in torchvision's layout for mnist / cifar10

    def __post_init__(self):
        _one_of("data", "dataset", self.dataset, DATASETS)


@dataclass
class TrainConfig:
    """[train]: quantisation-aware training (``sanitas train`` and the flow's train step)."""
    model: str = "lenet5"          # lenet5 | resnet20 | mobilenetv2 | vgg (sanitas.models.ZOO)
    epochs: int = 15               # full passes over the train split
    batch_size: int = 64           # images per optimiser step
    lr: float = 2e-3               # Adam learning rate (cosine-decayed to 0)
    weight_decay: float = 0.0      # Adam L2 penalty
    seed: int = 0                  # torch / numpy seed: same seed, same checkpoint
    device: str = "cpu"            # cpu | cuda

    def __post_init__(self):
        from .models.zoo import ZOO
        _one_of("train", "model", self.model, sorted(ZOO))
        _at_least("train", "epochs", self.epochs, 0)
        _at_least("train", "batch_size", self.batch_size, 1)
        _at_least("train", "lr", self.lr, 0)
        _at_least("train", "weight_decay", self.weight_decay, 0)


@dataclass
class GoldenConfig:
    """[golden]: the bit-exact check of the integer golden model against Brevitas."""
    backend: str = "int"           # int (numpy int64 executor) | f64 (float64 executor, exact below 2**53)

    def __post_init__(self):
        _one_of("golden", "backend", self.backend, ("int", "f64"))


@dataclass
class HlsConfig:
    """[hls]: Brevitas -> QONNX -> hls4ml project, compiled and checked against golden (``sanitas hls``)."""
    out: str = "build/hls4ml/project"   # hls4ml project folder of ``sanitas hls`` (the flow uses <flow.out>/hls4ml)
    limit: int | None = None       # check only the first N test images (None: the whole test split)
    scheme: str = "none"           # protection scheme of the generated sanitas_top (none, dmr; sanitas.protect specs)
    faults: int = 0                # fault records compared with ProtectedModel through the fault port (0: none)
    seed: int = 0                  # seed of the fault sample

    def __post_init__(self):
        _at_least("hls", "limit", self.limit, 1)
        _at_least("hls", "faults", self.faults, 0)
        _at_least("hls", "seed", self.seed, 0)


@dataclass
class CsimConfig:
    """[csim]: C simulation of an HLS kernel testbench with g++ and hls4ml's ap_types (``sanitas csim``)."""
    kernel: str = "systolic_gemm"  # HLS kernel under hls/tests/ (sanitas.hls.csim.KERNELS)
    build_dir: str | None = None   # build folder (None: build/csim/<kernel>; the flow uses <flow.out>/csim)


@dataclass
class RtlConfig:
    """[rtl]: Verilog generation of the array (geometry: [array]) and its optional checks (``sanitas rtl``)."""
    out: str = "build/rtl"         # Verilog output folder of ``sanitas rtl`` (the flow uses <flow.out>/rtl)
    sim: bool = False              # also run the cocotb fault-injection regression once (Icarus; the flow always does)
    area: bool = False             # also estimate LUT/FF/DSP with yosys synth_xilinx
    seed: int = 0                  # seed of the RTL regression's faults and GEMMs (``--regress``)


@dataclass
class BoardConfig:
    """[board]: inference through the PYNQ driver, compared with golden (``sanitas board``, the flow's board step)."""
    backend: str = "sim"           # sim (golden-backed simulator) | fake (emulated pynq Device) | pynq (a real board)
    board: str = "pynq-z2"         # board folder name under boards/
    bitfile: str | None = None     # overlay .bit (backend pynq; None: the board folder's)
    limit: int = 64                # test images run through the board
    ip: str = "csim"               # backend fake: csim (sanitas_top's C++) | golden (ProtectedModel) | callback
    scheme: str = "none"           # protection spec of the csim IP (backend fake)
    faults: int = 0                # faults then injected through the fault-injection registers (0: none)
    fault_seed: int = 0            # seed of those sampled faults

    def __post_init__(self):
        _one_of("board", "backend", self.backend, ("pynq", "fake", "sim"))
        _one_of("board", "ip", self.ip, ("csim", "golden", "callback"))
        _at_least("board", "faults", self.faults, 0)
        _at_least("board", "fault_seed", self.fault_seed, 0)
        _at_least("board", "limit", self.limit, 1)


@dataclass
class CampaignConfig:
    """[campaign]: the user settings of a fault-injection campaign (``sanitas inject``; ``CampaignSpec``'s defaults)."""
    fault: str = "bitflip"         # bitflip | stuck | multibit | random (single faults) | mibb | adsaf | ber (rates)
    sites: list[str] = field(default_factory=lambda: ["weight"])  # weight,bias,input,output,acc; ber: weight | act
    layers: list[str] | None = None  # restrict the faults to these nodes (None: every node with the site)
    faults: int = 1000             # faults to sample (single faults) or trials per rate (rate models)
    exhaustive: bool = False       # single faults: every element x bit x kind of the sites instead of sampling
    rates: list[float] | None = None  # rate models: rates to sweep (None: faults.campaign.DEFAULT_RATES[fault])
    inputs: int = 64               # test images per fault (the first K of the test split)
    seed: int = 0                  # fault sampling / trial seed
    dataset: str | None = None     # dataset of the test images (None: the checkpoint's)
    backend: str = "fast"          # single faults: fast (batched exact engine) | golden (reference replay, slow)
    engine: str = "local"          # local (one process) | dask (chunks on dask.distributed workers)
    workers: int = 2               # dask LocalCluster worker processes
    scheduler: str | None = None   # address of an existing dask scheduler (tcp://host:port; None: a LocalCluster)
    connect_timeout: float = 10.0  # seconds to reach the scheduler
    device: str = "cpu"            # cpu | cuda | auto (the dense torch path runs on a GPU)
    chunk_rows: int = 4096         # fault x input rows per batch / store commit

    def __post_init__(self):
        _one_of("campaign", "fault", self.fault, ("bitflip", "stuck", "multibit", "random", "mibb", "adsaf", "ber"))
        _one_of("campaign", "backend", self.backend, ("fast", "golden"))
        _one_of("campaign", "engine", self.engine, ("local", "dask"))
        _one_of("campaign", "dataset", self.dataset, DATASETS)
        _at_least("campaign", "faults", self.faults, 1)
        _at_least("campaign", "inputs", self.inputs, 1)
        _at_least("campaign", "workers", self.workers, 1)
        _at_least("campaign", "connect_timeout", self.connect_timeout, 0)
        _at_least("campaign", "chunk_rows", self.chunk_rows, 1)


@dataclass
class ProtectConfig:
    """[protect]: Sanity ABFT + DMR coverage and overhead study (``sanitas protect``, the flow's protect step)."""
    scheme: str = "sanity+dmr"     # scheme under test: sanity, sanity:eager, dmr, tmr, sanity-check, clip, none, a+b
    per_layer: str | None = None   # JSON/YAML per-layer scheme map whose default entry is `scheme` (None: uniform)
    compare: list[str] = field(default_factory=lambda: ["none", "sanity", "sanity:eager", "dmr", "tmr",
                                                         "sanity-check", "clip"])  # baselines on the same faults
    campaign: int = 600            # primary single-bit faults per network, equal share over the sites (0: none)
    state_faults: int | None = None  # faults in each scheme's own state per network (None: campaign // 6)
    clean: int = 50                # fault-free test images checked for false alarms
    hunt: int = 0                  # CRITICAL (fault, image) experiments to screen for and replay (0: none)
    timing_batch: int = 128        # test images per batch of the CPU-time ratio
    seed: int = 0                  # fault sampling seed

    def __post_init__(self):
        _at_least("protect", "campaign", self.campaign, 0)
        _at_least("protect", "state_faults", self.state_faults, 0)
        _at_least("protect", "clean", self.clean, 0)
        _at_least("protect", "hunt", self.hunt, 0)
        _at_least("protect", "timing_batch", self.timing_batch, 1)


@dataclass
class SoakConfig:
    """[soak]: a long run under accumulating memory upsets and transients (``sanitas soak``)."""
    scheme: str = "sanity+dmr"          # protection scheme (sanitas.protect spec), e.g. sanity+dmr, dmr, tmr, none
    per_layer: str | None = None        # JSON/YAML per-layer scheme map whose default entry is `scheme`
    inferences: int = 2000              # inferences in total (a resume may extend them)
    seu_per_inference: float = 0.01     # expected single-bit memory upsets per inference over all memory
    transients_per_inference: float = 1.0  # expected transient datapath faults per inference
    seed: int = 0                       # seed of upsets, transients and image draws
    patrol: int = 4                     # parameter codewords the patrol scrubber verifies per inference
    images: int = 256                   # test images the inferences draw from
    save_every: int = 200               # inferences between state saves (what a resume restarts from)

    def __post_init__(self):
        _at_least("soak", "inferences", self.inferences, 0)
        _at_least("soak", "seu_per_inference", self.seu_per_inference, 0)
        _at_least("soak", "transients_per_inference", self.transients_per_inference, 0)
        _at_least("soak", "patrol", self.patrol, 0)
        _at_least("soak", "images", self.images, 1)
        _at_least("soak", "save_every", self.save_every, 0)


@dataclass
class SearchConfig:
    """[search]: every knob of an FTT-NAS search run (``sanitas search``, the flow's search step).

    The run stores ``resolved().to_dict()`` in its state, so a resume cannot change them. ``dataset`` and
    ``data_dir`` are not keys of the [search] section: the CLI and the flow fill them from [data]."""
    dataset: str | None = None           # dataset (None: DataConfig's default); set from [data]
    data_dir: str | None = None          # folder of mnist / cifar10; set from [data]
    space: str = "mibb"                  # mibb | adsaf | bitflip: primitive set + fault model + alpha
    cells: int = 3                       # cells of the searched network
    nodes: int = 3                       # intermediate nodes per cell
    channels: int = 4                    # channels of the first cell
    stem_multiplier: int = 2             # stem channels = stem_multiplier * channels
    reductions: tuple[int, ...] = (1,)   # indices of the reduction cells (stride 2, channels x2)
    fault: str | None = None             # fault model: mibb | adsaf | bitflip (None: the space's)
    rate: float | None = None            # fault rate (None: FTT-NAS' rate of that model)
    alpha: float | None = None           # reward weight of faulty accuracy (None: the space's)
    beta: float = 0.5                    # FTT weight of the faulty cross-entropy
    controller: str = "evolution"        # rl | evolution | random
    budget: int = 120                    # architectures evaluated by the controller
    arch_batch: int = 6                  # architectures per controller step
    float_epochs: int = 60               # float warm-up epochs of the shared weights (quantisers bypassed)
    float_batch: int = 32                # batch of the float warm-up
    epochs: int = 4                      # INT8 FTT supernet epochs (controller steps after each)
    warmup: int = 0                      # INT8 epochs with uniform sampling before the controller starts
    batch_size: int = 64                 # batch of the INT8 supernet epochs
    lr: float = 1e-2                     # supernet Adam, cosine over all epochs (nas.search doc: not SGD 0.05)
    weight_decay: float = 0.0            # supernet Adam L2 penalty
    reward_frac: float = 0.2             # share of the training split held out for rewards
    eval_fault_samples: int = 2          # fault draws per candidate evaluation
    macs_weight: float = 0.0             # reward -= macs_weight * MACs / macs_ref
    overhead_weight: float = 0.0         # reward -= overhead_weight * protection MACs / macs_ref
    macs_ref: float = 1e5                # MACs normaliser of the cost terms
    protect_scheme: str = "sanity"       # protection priced by the overhead term (sanitas.protect spec)
    max_macs: int | str | None = "auto"  # MACs budget: an int, "auto" (the cheapest baseline's MACs) or None (none)
    topk: int = 2                        # genotypes trained from scratch at the end
    final_epochs: int = 15               # FTT epochs of each derived net
    final_lr: float = 5e-3               # Adam learning rate of the derived nets
    final_batch: int = 64                # batch of the derived nets' and baselines' training
    test_fault_samples: int = 20         # fault draws of the final faulty test accuracy (mean +- 95% CI)
    baselines: tuple[str, ...] = ("lenet5", "resnet20", "mobilenetv2", "vgg")  # zoo nets trained with the same FTT
    baseline_epochs: int | None = None   # epochs of every baseline (None: each zoo model's recipe)
    seed: int = 0                        # seed of the supernet, controller, data order and faults
    device: str = "cpu"                  # cpu | cuda
    engine: str = "local"                # local | dask: where candidates and final trainings run
    workers: int = 2                     # dask LocalCluster worker processes

    NOT_IN_SECTION: typing.ClassVar[tuple[str, ...]] = ("dataset", "data_dir")

    def __post_init__(self):
        from .models.zoo import ZOO
        from .nas.controllers import CONTROLLERS
        from .nas.ftt import FAULT_DEFAULTS
        from .nas.space import SPACE_PRESETS
        self.reductions = tuple(self.reductions)
        self.baselines = tuple(self.baselines)
        _one_of("search", "space", self.space, list(SPACE_PRESETS))
        _one_of("search", "controller", self.controller, list(CONTROLLERS))
        _one_of("search", "engine", self.engine, ("local", "dask"))
        _one_of("search", "fault", self.fault, list(FAULT_DEFAULTS))
        _one_of("search", "dataset", self.dataset, DATASETS)
        if isinstance(self.max_macs, str) and self.max_macs != "auto":
            raise SanitasError(f"search: max_macs must be an integer, 'auto' or None, got {self.max_macs!r}")
        if self.epochs < 1 or self.budget < 0 or self.topk < 1 or self.float_epochs < 0:
            raise SanitasError("search: epochs and topk must be >= 1, budget and float_epochs >= 0")
        if self.warmup >= self.epochs and self.budget > 0:
            raise SanitasError(f"search: warmup ({self.warmup}) must be < epochs ({self.epochs})")
        for name in ("final_epochs", "test_fault_samples", "eval_fault_samples", "warmup", "baseline_epochs"):
            _at_least("search", name, getattr(self, name), 0)
        for name in ("cells", "nodes", "channels", "stem_multiplier", "arch_batch", "float_batch", "batch_size",
                     "final_batch", "workers"):
            _at_least("search", name, getattr(self, name), 1)
        bad = [b for b in self.baselines if b not in ZOO]
        if bad:
            raise SanitasError(f"search: unknown baseline(s) {bad} (choose from {', '.join(ZOO)})")

    def resolved(self) -> "SearchConfig":
        """A copy with the defaults that depend on other fields filled in: dataset, fault and alpha."""
        from .nas.space import SPACE_PRESETS
        preset = SPACE_PRESETS[self.space]
        return dataclasses.replace(self, dataset=self.dataset or DataConfig().dataset,
                                   fault=self.fault or preset[1],
                                   alpha=preset[2] if self.alpha is None else self.alpha)

    def space_config(self):
        from .nas.space import SpaceConfig
        return SpaceConfig.preset(self.space, cells=self.cells, nodes=self.nodes, channels=self.channels,
                                  stem_multiplier=self.stem_multiplier, reductions=self.reductions)

    def to_dict(self) -> dict:
        """Every field (dataset and data_dir included), JSON-able: the record a search stores."""
        return _plain(dataclasses.asdict(self))

    @classmethod
    def from_dict(cls, d: dict) -> "SearchConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass(frozen=True)
class PlanConfig:
    """[plan]: the automatic per-layer protection planner (``sanitas.protect.planner``) and its verification."""
    critical: int = 300            # critical experiments taken from the campaign (uniform over its critical rows)
    sdc: int = 100                 # SDC experiments taken from it (none may become silent)
    add_weight: float = 0.25       # cost of one checksum add, in MACs
    op_weight: float = 0.25        # cost of one extra elementwise op (duplicate, compare, vote), in MACs
    rounds: int = 3                # greedy + reverse-delete rounds before the search gives up
    probe: int = 16                # failing experiments replayed to score one greedy move (uniform sample)
    min_support: int = 16          # distinct campaign faults a node needs before its protection may be dropped
    refine: int = 2                # re-plans with the faults the verification found unhandled (0: plan once)
    seed: int = 0                  # experiment sampling seed (verification uses seed + 1)
    verify_critical: int = 300     # held-out critical experiments of the verification hunt
    verify_faults: int = 300       # primary faults of the verification coverage campaign
    soak: int = 300                # inferences of the verification soak
    soak_seu: float = 0.05         # memory upsets per inference in the soak
    soak_transients: float = 1.0   # transient datapath faults per inference in the soak

    def __post_init__(self):
        for k in ("critical", "sdc", "rounds", "probe", "min_support", "refine", "verify_critical", "verify_faults",
                  "soak"):
            if getattr(self, k) < (1 if k in ("rounds", "probe") else 0):
                raise SanitasError(f"plan: {k} must be >= {1 if k in ('rounds', 'probe') else 0}, "
                                   f"got {getattr(self, k)}")


FLOW_DEFAULT_STEPS = ["search", "golden", "campaign", "plan", "csim", "rtl", "board", "report"]


@dataclass
class FlowConfig:
    """[flow]: ``sanitas flow``, the main job (its steps: ``sanitas.flow.STEPS``). The flow's search is [search]
    with the small budget below (the search_* fields replace the [search] values); the campaign is single-bit
    flips over every golden site."""
    out: str = "build/flow"        # every artefact of `sanitas flow` goes here, one folder per step
    report: str = "build/report"   # the report folder (index.html, index.md, the figures)
    steps: list[str] = field(default_factory=lambda: list(FLOW_DEFAULT_STEPS))  # steps run, in table order
    search_budget: int = 8         # architectures the controller evaluates
    search_float_epochs: int = 8   # float warm-up epochs of the supernet
    search_epochs: int = 2         # INT8 FTT supernet epochs
    search_cells: int = 2          # cells of the searched network
    search_nodes: int = 2          # intermediate nodes per cell
    final_epochs: int = 6          # FTT epochs of the best derived net
    baselines: tuple[str, ...] = ("lenet5",)  # zoo baselines trained with the same FTT
    baseline_epochs: int = 6       # FTT epochs of each baseline
    test_fault_samples: int = 4    # fault draws of the final faulty test accuracy
    campaign_faults: int = 600     # single-bit flips of the campaign, uniform over weight/bias/input/acc/output bits
    campaign_inputs: int = 32      # test images per fault (the first K; the planner and board use the same)
    csim_faults: int = 200         # fault records through sanitas_top's csim, each compared with ProtectedModel
    csim_fault_images: int = 4     # test images each csim fault record runs on (the first K)
    rtl_faults: int = 500          # single accumulator faults of the RTL regression (sanity_tile, one simulation)
    rtl_images: int = 4            # test images through the RTL engine command by command
    rtl_area: bool = True          # yosys area of the engine variants, TMR included, for [array] (needs yosys)
    board_faults: int = 20         # faults through the fake board's fault-injection registers, compared with golden

    def __post_init__(self):
        from .flow import STEPS
        for s in self.steps:
            _one_of("flow", "step", s, list(STEPS))
        for k in ("search_budget", "search_float_epochs", "search_epochs", "final_epochs", "baseline_epochs",
                  "test_fault_samples", "campaign_faults", "csim_faults", "board_faults"):
            if getattr(self, k) < 0:
                raise SanitasError(f"flow: {k} must be >= 0, got {getattr(self, k)}")
        from .models.zoo import ZOO
        for b in self.baselines:
            _one_of("flow", "baseline", b, sorted(ZOO))
        for k in ("search_cells", "search_nodes", "campaign_inputs", "csim_fault_images", "rtl_faults", "rtl_images"):
            if getattr(self, k) < 1:
                raise SanitasError(f"flow: {k} must be >= 1, got {getattr(self, k)}")


@dataclass
class Config:
    """The whole configuration: one section per subcommand (see the module doc)."""
    array: ArrayConfig = field(default_factory=ArrayConfig)        # accelerator geometry (rtl, csim, hls, board)
    data: DataConfig = field(default_factory=DataConfig)           # dataset
    train: TrainConfig = field(default_factory=TrainConfig)        # sanitas train
    golden: GoldenConfig = field(default_factory=GoldenConfig)     # sanitas golden
    hls: HlsConfig = field(default_factory=HlsConfig)              # sanitas hls
    csim: CsimConfig = field(default_factory=CsimConfig)           # sanitas csim
    rtl: RtlConfig = field(default_factory=RtlConfig)              # sanitas rtl
    board: BoardConfig = field(default_factory=BoardConfig)        # sanitas board
    campaign: CampaignConfig = field(default_factory=CampaignConfig)  # sanitas inject
    protect: ProtectConfig = field(default_factory=ProtectConfig)  # sanitas protect
    soak: SoakConfig = field(default_factory=SoakConfig)           # sanitas soak
    search: SearchConfig = field(default_factory=SearchConfig)     # sanitas search
    plan: PlanConfig = field(default_factory=PlanConfig)           # the protection planner (flow step plan)
    flow: FlowConfig = field(default_factory=FlowConfig)           # sanitas flow

    def to_dict(self) -> dict:
        """JSON-able ``{section: {key: value}}``; ``Config.from_dict`` round-trips it."""
        return {f.name: section_to_dict(getattr(self, f.name)) for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, d, source: str | None = None) -> "Config":
        """Check ``d`` (``{section: {key: value}}``; missing sections and keys take their defaults) against the
        field annotations and build the config; ``source`` (a file name) goes into the error messages."""
        where = f"config {source}" if source else "config"
        if not isinstance(d, dict):
            raise SanitasError(f"{where}: expected a mapping of sections, got {_describe(d)}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(map(str, set(d) - set(fields)))
        if unknown:
            raise SanitasError(f"{where}: unknown section(s): {', '.join(unknown)} (valid: {', '.join(fields)})")
        return cls(**{name: section_from_dict(f.default_factory, d.get(name), name, where)
                      for name, f in fields.items()})

    @classmethod
    def load(cls, path) -> "Config":
        """Read a YAML (.yaml / .yml, ``yaml.safe_load``) or JSON file; every error is one ``SanitasError`` line."""
        p = Path(path)
        if not p.is_file():
            raise SanitasError(f"config file not found: {p}")
        try:
            text = p.read_text()
        except (OSError, UnicodeDecodeError) as e:
            raise SanitasError(f"config {p}: cannot read it ({type(e).__name__})") from None
        if p.suffix in (".yaml", ".yml"):
            import yaml
            try:
                d = yaml.safe_load(text)
            except yaml.YAMLError as e:
                mark = getattr(e, "problem_mark", None)
                at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
                raise SanitasError(f"config {p}: not valid YAML{at}: {getattr(e, 'problem', None) or e}") from None
        else:
            try:
                d = json.loads(text)
            except json.JSONDecodeError as e:
                raise SanitasError(f"config {p}: not valid JSON at line {e.lineno}, column {e.colno}: "
                                   f"{e.msg}") from None
        return cls.from_dict({} if d is None else d, source=str(p))

    def save(self, path) -> Path:
        """Write the config as JSON (atomically: a temporary file renamed over ``path``)."""
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2))
        tmp.replace(p)
        return p


# ------------------------------------------------------------------------------------------------ typed loading
def section_keys(cls) -> list[str]:
    """The keys a section accepts in a config file (its fields, less ``NOT_IN_SECTION``)."""
    skip = getattr(cls, "NOT_IN_SECTION", ())
    return [f.name for f in dataclasses.fields(cls) if f.name not in skip]


def section_to_dict(sec) -> dict:
    """A section as its JSON-able config-file mapping (enums as their values, tuples as lists)."""
    return {k: _plain(getattr(sec, k)) for k in section_keys(type(sec))}


def section_from_dict(cls, d, name: str, where: str = "config"):
    """Build section ``cls`` from mapping ``d`` (None: all defaults), checking keys and value types."""
    if d is None:
        d = {}
    if not isinstance(d, dict):
        raise SanitasError(f"{where}: [{name}] must be a mapping of keys, got {_describe(d)}")
    keys = section_keys(cls)
    unknown = sorted(map(str, set(d) - set(keys)))
    if unknown:
        raise SanitasError(f"{where}: unknown key(s) in [{name}]: {', '.join(unknown)} (valid: {', '.join(keys)})")
    hints = typing.get_type_hints(cls)
    kw = {k: check_type(v, hints[k], f"{where}: [{name}] {k}") for k, v in d.items()}
    try:
        return cls(**kw)
    except SanitasError as e:
        msg = str(e)
        msg = msg[len(name) + 2:] if msg.startswith(f"{name}: ") else msg
        raise SanitasError(f"{where}: [{name}] {msg}") from None


def check_type(value, tp, where: str):
    """``value`` checked against annotation ``tp`` and converted (list -> tuple, int -> float, str -> Enum)."""
    ok, out = _match(value, tp)
    if not ok:
        raise SanitasError(f"{where}: expected {_type_name(tp)}, got {_describe(value)}")
    return out


def _match(value, tp) -> tuple[bool, object]:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(tp):
            ok, out = _match(value, arm)
            if ok:
                return True, out
        return False, None
    if tp is type(None):
        return value is None, None
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return ok, float(value) if ok else None
    if tp is str:
        return isinstance(value, str), value
    if isinstance(tp, type) and issubclass(tp, Enum):
        try:
            return True, tp(value)
        except ValueError:
            return False, None
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            return False, None
        arg = typing.get_args(tp)[0]
        items = [_match(v, arg) for v in value]
        if not all(ok for ok, _ in items):
            return False, None
        vals = [v for _, v in items]
        return True, (vals if origin is list else tuple(vals))
    raise TypeError(f"config: unsupported annotation {tp!r}")        # a programming error, not user input


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if isinstance(tp, type) and issubclass(tp, Enum):
        return "one of " + ", ".join(str(m.value) for m in tp)
    if origin in (list, tuple):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    return getattr(tp, "__name__", str(tp))


def _describe(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60] + '...' if len(text) > 60 else text}"


def _plain(x):
    if isinstance(x, Enum):
        return x.value
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x
