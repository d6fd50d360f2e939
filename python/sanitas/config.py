"""One typed, JSON/YAML-serialisable configuration for sanitas (docs/architecture.md, "Python package").

``Config`` groups the sections used by the CLI and the flow. Load with ``Config.load(path)`` (YAML via
``yaml.safe_load`` or JSON); unknown keys are an error (a typo must not be silently ignored).
"""
from __future__ import annotations

import dataclasses
import json
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


@dataclass
class DataConfig:
    dataset: str = "digits"        # digits (bundled, offline) | mnist | cifar10
    data_dir: str | None = None    # folder in torchvision's layout for mnist / cifar10


@dataclass
class TrainConfig:
    model: str = "lenet5"          # lenet5 | resnet20 | mobilenetv2 | vgg
    epochs: int = 15               # full passes over the train split
    batch_size: int = 64           # images per SGD step
    lr: float = 2e-3               # Adam learning rate (cosine-decayed to 0)
    weight_decay: float = 0.0      # Adam L2 penalty
    seed: int = 0                  # torch / numpy seed: same seed, same checkpoint
    device: str = "cpu"            # cpu | cuda


@dataclass
class RtlConfig:
    rows: int = 4                  # systolic array rows (output rows computed in parallel)
    cols: int = 4                  # systolic array columns (output channels in parallel), + 1 checksum column
    data_width: int = 8            # operand width in bits (INT8)
    acc_width: int = 32            # accumulator width in bits (INT32)


@dataclass
class FlowConfig:
    out: str = "build/flow"        # every artefact of `sanitas flow` goes here
    report: str = "build/report"   # the report folder (index.html)
    steps: list = field(default_factory=lambda: ["train", "golden", "hls", "csim", "rtl", "report"])


@dataclass
class Config:
    array: ArrayConfig = field(default_factory=ArrayConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rtl: RtlConfig = field(default_factory=RtlConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["array"] = self.array.to_dict()
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Config":
        if not isinstance(d, dict):
            raise SanitasError("config must be a mapping of sections")
        kw = {}
        for f in dataclasses.fields(cls):
            sec = d.get(f.name, {})
            sub = f.default_factory()
            names = {x.name for x in dataclasses.fields(sub)}
            unknown = set(sec) - names
            if unknown:
                raise SanitasError(f"config: unknown key(s) in [{f.name}]: {', '.join(sorted(unknown))}")
            kw[f.name] = dataclasses.replace(sub, **sec)
        unknown = set(d) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise SanitasError(f"config: unknown section(s): {', '.join(sorted(unknown))}")
        return cls(**kw)

    @classmethod
    def load(cls, path) -> "Config":
        p = Path(path)
        if not p.exists():
            raise SanitasError(f"config file not found: {p}")
        text = p.read_text()
        if p.suffix in (".yaml", ".yml"):
            import yaml
            d = yaml.safe_load(text) or {}
        else:
            d = json.loads(text)
        return cls.from_dict(d)

    def save(self, path) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(json.dumps(self.to_dict(), indent=2))
        return p
