"""Bit-exactness check of the golden integer model against the Brevitas model it was exported from."""
from __future__ import annotations

import numpy as np
import torch


def check_bitexact(model, gm, x, backend: str = "int", batch: int = 256) -> dict:
    """Compare Brevitas logits with golden ``int * 2**out_exp`` per image; an image counts when all logits are equal.

    Returns ``{"bit_exact": K, "total": N, "max_abs_diff": float (in LSBs of the output), "golden_pred": (N,)}``.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    model.eval()
    ok, worst, preds = 0, 0.0, []
    for i in range(0, len(x), batch):
        xb = x[i:i + batch]
        with torch.no_grad():
            ref = model(xb).double().numpy() * 2.0 ** -gm.out_exp     # Brevitas logits in output LSBs
        g = gm.predict(xb.numpy(), backend=backend).astype(np.float64)
        eq = (ref == g).all(axis=1)
        ok += int(eq.sum())
        worst = max(worst, float(np.abs(ref - g).max()) if g.size else 0.0)
        preds.append(g.argmax(1))
    return {"bit_exact": ok, "total": int(len(x)), "max_abs_diff": worst,
            "golden_pred": np.concatenate(preds) if preds else np.zeros(0, dtype=np.int64)}
