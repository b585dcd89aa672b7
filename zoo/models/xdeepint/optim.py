"""The two optimisers of xDeepInt's combined optimisation (Yan & Li, DLP-KDD 2020, arXiv 2301.01089, §"Combined
optimization"; paper §3.4, official xdeepint/src/optimizer.py and TensorFlow's FTRL).

- :class:`GroupFTRL` (G-FTRL): FTRL-Proximal with a group-lasso penalty whose groups are the *rows* of an embedding
  table (one row = the embedding of one feature value). A row whose accumulated gradient ``z_r`` is small enough is set
  exactly to zero -- the feature value is dropped ("feature selection"). Per element, with state ``n``, ``z`` = 0:

      sigma = (sqrt(n + g^2) - sqrt(n)) / alpha
      n <- n + g^2 ;  z <- z + g - sigma * E
      E_r = 0                                                   if ||z_r||_2 <= lambda1 * sqrt(d)
      E_r = z_r * (lambda1 sqrt(d) / ||z_r||_2 - 1) / ((beta + sqrt(n_r)) / alpha + lambda2)   otherwise

  (d = row length; the division is element-wise.) The reference applies this to the whole table every step, so a
  row that never received a gradient is set to zero at the first step (z = 0), and a row with zero gradient is
  recomputed from unchanged (z, n) and does not move. With sparse gradients we therefore do the first step on the
  whole table and later steps only on the rows present in the gradient -- the same result, cheaper.

- :class:`FTRLProximal`: element-wise FTRL-Proximal with TensorFlow's ``ApplyFtrl`` semantics (l1/l2 penalties, the
  factor 2 on l2, a learning-rate power, accumulators initialised to ``initial_accumulator``):

      accum' = accum + g^2
      linear <- linear + g - (accum'^(-p) - accum^(-p)) / lr * w
      w = (sign(linear) * l1 - linear) / (accum'^(-p) / lr + 2 l2)   if |linear| > l1   else 0

  Weights driven exactly to zero are pruned interactions ("interaction selection") when applied to the PIN matrices.

Both are plain :class:`torch.optim.Optimizer` subclasses; their state (``n``/``z`` or ``accum``/``linear``, in the
parameter's dtype) lives in ``optimizer.state``, so they checkpoint like any optimiser.
"""

from __future__ import annotations

import math

import torch
from torch.optim import Optimizer

__all__ = ["GroupFTRL", "FTRLProximal"]


class GroupFTRL(Optimizer):
    """Group-lasso FTRL over the rows of 2-D parameters (embedding tables). See the module docstring.

    Args:
        alpha: learning rate alpha (reference 0.02).
        beta: beta of the adaptive learning rate (reference 1.0).
        lambda1: group-lasso strength; the threshold on ``||z_r||`` is ``lambda1 * sqrt(d)`` (reference 10.0).
        lambda2: L2 strength (reference 10.0).

    Dense and sparse (``nn.Embedding(sparse=True)``) gradients are accepted.
    """

    def __init__(self, params, alpha: float = 0.02, beta: float = 1.0, lambda1: float = 10.0, lambda2: float = 10.0):
        if alpha <= 0:
            raise ValueError(f"GroupFTRL: alpha must be > 0, got {alpha}")
        if beta < 0 or lambda1 < 0 or lambda2 < 0:
            raise ValueError(f"GroupFTRL: beta, lambda1, lambda2 must be >= 0, got {beta}, {lambda1}, {lambda2}")
        super().__init__(params, dict(alpha=alpha, beta=beta, lambda1=lambda1, lambda2=lambda2))
        for group in self.param_groups:
            for p in group["params"]:
                if p.dim() != 2:
                    raise ValueError(
                        "GroupFTRL works on 2-D tables (a group = one row); got a parameter of shape "
                        f"{tuple(p.shape)}. "
                        "Give the other parameters to FTRLProximal (or another optimiser)."
                    )

    @staticmethod
    def _rows(z: torch.Tensor, n: torch.Tensor, alpha, beta, lambda1, lambda2) -> torch.Tensor:
        """E for rows (..., d) from their (z, n): the closed-form solution of the group-lasso FTRL step."""
        thr = lambda1 * math.sqrt(z.shape[-1])
        z_norm = z.norm(dim=-1, keepdim=True)
        keep = z_norm > thr
        # where(keep) also guards the division when ||z_r|| = 0 (then lambda1 = 0 and the row is 0 anyway).
        scale = torch.where(keep, thr / z_norm.clamp_min(torch.finfo(z.dtype).tiny) - 1, torch.zeros_like(z_norm))
        return z * scale / ((beta + n.sqrt()) / alpha + lambda2)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            a, b, l1, l2 = group["alpha"], group["beta"], group["lambda1"], group["lambda2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["n"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["z"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                n, z = state["n"], state["z"]
                g = p.grad
                if g.is_sparse and state["step"] > 0:
                    g = g.coalesce()
                    if g.sparse_dim() != 1:  # element-sparse -> row-sparse (the layout nn.Embedding produces)
                        g = g.to_dense().to_sparse(1)
                    rows, vals = g.indices()[0], g.values()
                    if rows.numel() == 0:
                        state["step"] += 1
                        continue
                    n_r, z_r, w_r = n[rows], z[rows], p[rows]
                    sigma = ((n_r + vals * vals).sqrt() - n_r.sqrt()) / a
                    n_r = n_r + vals * vals
                    z_r = z_r + vals - sigma * w_r
                    n[rows], z[rows] = n_r, z_r
                    p[rows] = self._rows(z_r, n_r, a, b, l1, l2)
                else:
                    if g.is_sparse:
                        g = g.to_dense()
                    g2 = g * g
                    sigma = ((n + g2).sqrt() - n.sqrt()) / a
                    n.add_(g2)
                    z.add_(g - sigma * p)
                    p.copy_(self._rows(z, n, a, b, l1, l2))
                state["step"] += 1
        return loss


class FTRLProximal(Optimizer):
    """Element-wise FTRL-Proximal with TensorFlow 1 ``tf.train.FtrlOptimizer`` semantics. See the module docstring.

    Args:
        lr: learning rate (reference 0.02).
        lr_power: learning-rate power, <= 0 (reference and TF default -0.5: per-coordinate 1/sqrt schedule).
        l1, l2: L1 / L2 strengths (reference 0.1 / 0.1; TF uses ``2 * l2`` in the denominator, kept here).
        initial_accumulator: starting value of the squared-gradient accumulator (TF default 0.1).
    """

    def __init__(
        self,
        params,
        lr: float = 0.02,
        lr_power: float = -0.5,
        l1: float = 0.1,
        l2: float = 0.1,
        initial_accumulator: float = 0.1,
    ):
        if lr <= 0:
            raise ValueError(f"FTRLProximal: lr must be > 0, got {lr}")
        if lr_power > 0:
            raise ValueError(f"FTRLProximal: lr_power must be <= 0 (TF semantics), got {lr_power}")
        if l1 < 0 or l2 < 0:
            raise ValueError(f"FTRLProximal: l1 and l2 must be >= 0, got {l1}, {l2}")
        if initial_accumulator <= 0:
            raise ValueError(f"FTRLProximal: initial_accumulator must be > 0, got {initial_accumulator}")
        super().__init__(params, dict(lr=lr, lr_power=lr_power, l1=l1, l2=l2, initial_accumulator=initial_accumulator))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, p_pow, l1, l2 = group["lr"], group["lr_power"], group["l1"], group["l2"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                g = p.grad
                if g.is_sparse:
                    g = g.to_dense()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["accum"] = torch.full_like(p, group["initial_accumulator"])
                    state["linear"] = torch.zeros_like(p)
                accum, linear = state["accum"], state["linear"]
                new_accum = accum + g * g
                # accum^(-p): sqrt for the default p = -0.5 (exact, not pow, so hand-computed values match bit-wise).
                root = (lambda t: t.sqrt()) if p_pow == -0.5 else (lambda t: t.pow(-p_pow))
                new_root = root(new_accum)
                linear.add_(g - (new_root - root(accum)) / lr * p)
                quadratic = new_root / lr + 2 * l2
                p.copy_(
                    torch.where(linear.abs() > l1, (torch.sign(linear) * l1 - linear) / quadratic, torch.zeros_like(p))
                )
                accum.copy_(new_accum)
                state["step"] += 1
        return loss
