"""Search controllers over the flat decision vectors of ``SearchSpace`` (pluggable: ask / tell / state).

* ``RLController`` — the FTT-NAS / ENAS controller: an LSTM (100 hidden) emits the decisions one by one
  (input of each edge, then its op; logits / temperature 5), trained by REINFORCE with a moving-average
  baseline (decay 0.99), entropy bonus 0.01 and Adam 1e-3 (Ning et al. sec. 4.2; Pham et al. 2018).
* ``EvolutionController`` — regularized (aging) evolution (Real et al. 2019): a population of the last P
  evaluated architectures, tournament of S, the winner mutated at one decision (an edge's input or op).
* ``RandomController`` — uniform random search (the control every NAS result should beat).

Interface (``Controller``): ``ask(n) -> list[vec]`` (architectures to evaluate), ``tell(vecs, rewards)``,
``sample_train() -> vec`` (architecture for one supernet training step), ``state_dict()`` /
``load_state_dict()`` (everything needed to resume bit-identically, RNG states included), ``best()``.
All randomness comes from the controller's own seeded generators, never from global RNG.
"""
from __future__ import annotations

from collections import deque

import numpy as np
import torch
import torch.nn as nn

from .space import SearchSpace


class Controller:
    """Base: owns the space, a numpy Generator and the best (vec, reward) seen."""
    name = "base"

    def __init__(self, space: SearchSpace, seed: int = 0):
        self.space = space
        self.decisions = space.decisions()
        self.rng = np.random.default_rng(seed)
        self._best: tuple[list[int], float] | None = None

    # -------------------------------------------------------------- helpers
    def random_vec(self) -> list[int]:
        """A uniform random *valid* decision vector (rejection sampling; invalid ones are rare)."""
        for _ in range(1000):
            v = [int(self.rng.integers(c)) for _, c in self.decisions]
            if self.space.valid(self.space.decode(v)):
                return v
        raise RuntimeError("could not sample a valid architecture")

    def _record(self, vecs, rewards):
        for v, r in zip(vecs, rewards):
            if self._best is None or r > self._best[1]:
                self._best = (list(map(int, v)), float(r))

    def best(self):
        return self._best

    # -------------------------------------------------------------- interface
    def ask(self, n: int) -> list[list[int]]:
        raise NotImplementedError

    def tell(self, vecs, rewards) -> dict:
        raise NotImplementedError

    def sample_train(self) -> list[int]:
        return self.random_vec()

    def state_dict(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "best": self._best}

    def load_state_dict(self, d: dict) -> None:
        self.rng.bit_generator.state = d["rng"]
        self._best = tuple(d["best"]) if d["best"] is not None else None


class RandomController(Controller):
    """Uniform random search."""
    name = "random"

    def ask(self, n):
        return [self.random_vec() for _ in range(n)]

    def tell(self, vecs, rewards):
        self._record(vecs, rewards)
        return {}


class EvolutionController(Controller):
    """Regularized evolution: population = the last ``population`` evaluated; tournament of ``sample_size``."""
    name = "evolution"

    def __init__(self, space: SearchSpace, seed: int = 0, population: int = 20, sample_size: int = 5):
        super().__init__(space, seed)
        self.population_size = int(population)
        self.sample_size = int(sample_size)
        self.population: deque = deque()     # (vec, reward), oldest first
        self.pending = 0                     # asked but not yet told

    def mutate(self, vec) -> list[int]:
        """Change one decision (an edge's input or its op) to a different value; keep the child valid."""
        for _ in range(1000):
            child = list(vec)
            k = int(self.rng.integers(len(child)))
            n = self.decisions[k][1]
            if n < 2:
                continue
            child[k] = int((child[k] + 1 + self.rng.integers(n - 1)) % n)
            if self.space.valid(self.space.decode(child)):
                return child
        return self.random_vec()

    def ask(self, n):
        out = []
        for _ in range(n):
            if len(self.population) + self.pending < self.population_size or not self.population:
                out.append(self.random_vec())
            else:
                pop = list(self.population)
                idx = self.rng.choice(len(pop), size=min(self.sample_size, len(pop)), replace=False)
                parent = max((pop[i] for i in idx), key=lambda t: t[1])
                out.append(self.mutate(parent[0]))
            self.pending += 1
        return out

    def tell(self, vecs, rewards):
        for v, r in zip(vecs, rewards):
            self.population.append((list(map(int, v)), float(r)))
            if len(self.population) > self.population_size:
                self.population.popleft()          # aging: the oldest dies, not the worst
        self.pending = max(0, self.pending - len(vecs))
        self._record(vecs, rewards)
        rs = [r for _, r in self.population]
        return {"population_mean": float(np.mean(rs)), "population_max": float(np.max(rs))}

    def state_dict(self):
        d = super().state_dict()
        d.update(population=[[v, r] for v, r in self.population], pending=self.pending)
        return d

    def load_state_dict(self, d):
        super().load_state_dict(d)
        self.population = deque((list(v), float(r)) for v, r in d["population"])
        self.pending = int(d["pending"])


class _LSTMPolicy(nn.Module):
    """Autoregressive policy: LSTMCell over the decision sequence; input/op embeddings and heads."""

    def __init__(self, n_ops: int, max_inputs: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.start = nn.Parameter(torch.zeros(1, hidden))
        self.lstm = nn.LSTMCell(hidden, hidden)
        self.op_emb = nn.Embedding(n_ops, hidden)
        self.in_emb = nn.Embedding(max_inputs, hidden)
        self.op_head = nn.Linear(hidden, n_ops)
        self.in_head = nn.Linear(hidden, max_inputs)
        for p in self.parameters():               # ENAS init: uniform(-0.1, 0.1)
            nn.init.uniform_(p, -0.1, 0.1)


class RLController(Controller):
    """LSTM + REINFORCE (FTT-NAS): temperature 5, baseline decay 0.99, entropy 0.01, Adam 1e-3."""
    name = "rl"

    def __init__(self, space: SearchSpace, seed: int = 0, hidden: int = 100, temperature: float = 5.0,
                 tanh_constant: float | None = None, lr: float = 1e-3, baseline_decay: float = 0.99,
                 entropy_weight: float = 0.01, device: str = "cpu"):
        super().__init__(space, seed)
        self.temperature = float(temperature)
        self.tanh_constant = tanh_constant
        self.baseline_decay = float(baseline_decay)
        self.entropy_weight = float(entropy_weight)
        self.baseline: float | None = None
        self.device = device
        n_ops = len(space.primitives)
        max_in = max(c for k, c in self.decisions if k == "input")
        with torch.random.fork_rng(devices=[]):   # seeded init without touching the caller's global RNG
            torch.manual_seed(seed)
            self.policy = _LSTMPolicy(n_ops, max_in, hidden).to(device)
        self.opt = torch.optim.Adam(self.policy.parameters(), lr=lr)
        self.gen = torch.Generator().manual_seed(seed)

    def _logits(self, h, kind: str, n_choices: int):
        head = self.policy.op_head if kind == "op" else self.policy.in_head
        z = head(h) / self.temperature
        if self.tanh_constant is not None:
            z = self.tanh_constant * torch.tanh(z)
        if n_choices < z.shape[1]:                # inputs of node j: only the first j+2 exist
            mask = torch.arange(z.shape[1], device=z.device) >= n_choices
            z = z.masked_fill(mask, -1e9)          # finite: exp -> exactly 0, no NaN gradients
        return z

    def _run(self, n: int, vecs=None):
        """Sample ``n`` vectors (vecs None) or score given ``vecs``; returns (vecs, log_prob (n,), entropy (n,))."""
        hid = self.policy.hidden
        x = self.policy.start.expand(n, hid)
        h = x.new_zeros(n, hid)
        c = x.new_zeros(n, hid)
        logp = x.new_zeros(n)
        ent = x.new_zeros(n)
        out = [] if vecs is None else None
        forced = None if vecs is None else torch.as_tensor(vecs, dtype=torch.long, device=x.device)
        for k, (kind, nc) in enumerate(self.decisions):
            h, c = self.policy.lstm(x, (h, c))
            z = self._logits(h, kind, nc)
            lp = torch.log_softmax(z, dim=1)
            p = lp.exp()
            ent = ent - (p * lp).sum(1)
            if forced is None:
                a = torch.multinomial(p.detach().cpu(), 1, generator=self.gen).squeeze(1).to(x.device)
                out.append(a)
            else:
                a = forced[:, k]
            logp = logp + lp.gather(1, a[:, None]).squeeze(1)
            x = (self.policy.op_emb if kind == "op" else self.policy.in_emb)(a)
        if forced is None:
            vecs = torch.stack(out, 1).cpu().tolist()
        return vecs, logp, ent

    def ask(self, n):
        with torch.no_grad():
            vecs, _, _ = self._run(n)
        # an invalid vector (a cell without live nodes) is kept: it is told reward 0, which teaches the policy
        return vecs

    def sample_train(self):
        for _ in range(100):
            v = self.ask(1)[0]
            if self.space.valid(self.space.decode(v)):
                return v
        return self.random_vec()

    def tell(self, vecs, rewards):
        r = torch.as_tensor(rewards, dtype=torch.float32, device=self.device)
        if self.baseline is None:
            self.baseline = float(r.mean())
        adv = []
        for ri in r.tolist():                      # moving-average baseline, updated sample by sample
            adv.append(ri - self.baseline)
            self.baseline = self.baseline_decay * self.baseline + (1 - self.baseline_decay) * ri
        adv = torch.as_tensor(adv, dtype=torch.float32, device=self.device)
        _, logp, ent = self._run(len(vecs), vecs)
        loss = -(adv * logp).mean() - self.entropy_weight * ent.mean()
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()
        self._record(vecs, rewards)
        return {"loss": float(loss.detach()), "baseline": self.baseline, "entropy": float(ent.detach().mean())}

    def probs(self) -> list[list[float]]:
        """Greedy-path decision distributions (for reports and tests): per decision the softmax probabilities
        along the argmax path."""
        with torch.no_grad():
            hid = self.policy.hidden
            x = self.policy.start
            h = x.new_zeros(1, hid)
            c = x.new_zeros(1, hid)
            out = []
            for kind, nc in self.decisions:
                h, c = self.policy.lstm(x, (h, c))
                p = torch.softmax(self._logits(h, kind, nc), 1)[0, :nc]
                out.append(p.cpu().tolist())
                a = p.argmax()[None]
                x = (self.policy.op_emb if kind == "op" else self.policy.in_emb)(a)
            return out

    def state_dict(self):
        d = super().state_dict()
        d.update(policy={k: v.detach().cpu() for k, v in self.policy.state_dict().items()},
                 opt=self.opt.state_dict(), gen=self.gen.get_state(), baseline=self.baseline)
        return d

    def load_state_dict(self, d):
        super().load_state_dict(d)
        self.policy.load_state_dict(d["policy"])
        self.opt.load_state_dict(d["opt"])
        self.gen.set_state(d["gen"])
        self.baseline = d["baseline"]


CONTROLLERS = {"rl": RLController, "evolution": EvolutionController, "random": RandomController}
