"""One typed, JSON/YAML-serialisable configuration for sanitas (DESIGN.md: "one config object flows everywhere").

``Config`` groups the sections used by the CLI and the flow. Load with ``Config.load(path)`` (YAML via
``yaml.safe_load`` or JSON); unknown keys are an error (a typo must not be silently ignored).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import SanitasError


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
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    rtl: RtlConfig = field(default_factory=RtlConfig)
    flow: FlowConfig = field(default_factory=FlowConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

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
