"""``zoo.ops.relation_kl``: TinyMIM's relation-distillation loss, tiled so that no N×N matrix is materialised.

TinyMIM (Ren et al., "TinyMIM: An Empirical Study of Distilling MIM Pre-trained Models", CVPR 2023,
arXiv 2301.01296, relation distillation) distils the token relations of a teacher into a student: for a pair of
per-head token embeddings (a, b) — queries/keys or values/values — the relation is R = softmax(a bᵀ · scale)
row-wise (scale = 1/sqrt(d_h) of each model), and the loss is KL(R_teacher ‖ R_student) summed over the key axis
and averaged over batch, heads and the N query rows (as the official code's KLDivLoss does).

Per row i, with S = s_a s_bᵀ·s_scale and T = t_a t_bᵀ·t_scale, P = softmax(T_i), Q = softmax(S_i):

    KL_i = Σ_j P_ij (T_ij − S_ij) − lse(T_i) + lse(S_i)

so one sweep over column tiles with running maxima (the online log-sum-exp of flash attention) gives lse(S_i),
lse(T_i) and Σ_j P_ij (T_ij − S_ij) in O(row block) memory. The gradient to the student logits is
∂KL_i/∂S_ij = Q_ij − P_ij, recomputed tile by tile in the backward from the two saved log-sum-exps; it flows to
s_a (row sweep) and s_b (column sweep) without atomics. The teacher is the distillation target: its inputs are
constants (no gradient; the reference detaches them too).

Shapes: a (B, H, N, d) and b (B, H, M, d) (M = N for TinyMIM); student and teacher ``d`` may differ.
Returns a float32 scalar.
"""

from __future__ import annotations

import torch
from torch import Tensor

from zoo.ops import _dispatch

try:  # Triton comes with torch's Linux CUDA wheels; without it only the reference runs (zoo.ops._dispatch says why)
    import triton.language as tl
except Exception:  # ImportError, or a broken install
    tl = None

OP = "relation_kl"


def _check(student_a, student_b, teacher_a, teacher_b):
    for name, t in (
        ("student_a", student_a),
        ("student_b", student_b),
        ("teacher_a", teacher_a),
        ("teacher_b", teacher_b),
    ):
        if not isinstance(t, Tensor) or t.dim() != 4:
            raise ValueError(
                f"zoo.ops.relation_kl: {name} must be a (B, H, N, d) tensor, got "
                f"{tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__}"
            )
    for who, a, b in (("student", student_a, student_b), ("teacher", teacher_a, teacher_b)):
        if a.shape[:2] != b.shape[:2] or a.shape[-1] != b.shape[-1]:
            raise ValueError(
                f"zoo.ops.relation_kl: {who}_a {tuple(a.shape)} and {who}_b {tuple(b.shape)} must share "
                "B, H and d (a is (B, H, N, d), b is (B, H, M, d))"
            )
    if student_a.shape[:3] != teacher_a.shape[:3] or student_b.shape[:3] != teacher_b.shape[:3]:
        raise ValueError(
            f"zoo.ops.relation_kl: student and teacher must have the same B, H and token counts, got "
            f"student_a {tuple(student_a.shape)}, teacher_a {tuple(teacher_a.shape)}, "
            f"student_b {tuple(student_b.shape)}, teacher_b {tuple(teacher_b.shape)}"
        )


def relation_kl_reference(
    student_a: Tensor,
    student_b: Tensor,
    teacher_a: Tensor,
    teacher_b: Tensor,
    student_scale: float,
    teacher_scale: float,
) -> Tensor:
    """The specification: materialises the (B, H, N, M) relations."""
    _check(student_a, student_b, teacher_a, teacher_b)
    s = torch.matmul(student_a.float(), student_b.float().transpose(-1, -2)) * student_scale
    t = torch.matmul(teacher_a.detach().float(), teacher_b.detach().float().transpose(-1, -2)) * teacher_scale
    log_q = torch.log_softmax(s, dim=-1)
    log_p = torch.log_softmax(t, dim=-1)
    kl_rows = (log_p.exp() * (log_p - log_q)).sum(-1)  # (B, H, N)
    return kl_rows.mean()


def relation_kl(
    student_a: Tensor,
    student_b: Tensor,
    teacher_a: Tensor,
    teacher_b: Tensor,
    student_scale: float,
    teacher_scale: float,
    impl: str = "auto",
) -> Tensor:
    """Mean over B, H and the N rows of KL(softmax(t_a t_bᵀ·teacher_scale) ‖ softmax(s_a s_bᵀ·student_scale)).

    Inputs are (B, H, N, d) / (B, H, M, d); gradients flow to the student inputs only. ``impl``: see ``zoo.ops``.
    """
    _check(student_a, student_b, teacher_a, teacher_b)
    if _dispatch.resolve(OP, impl, student_a, student_b, teacher_a, teacher_b) == "reference":
        return relation_kl_reference(student_a, student_b, teacher_a, teacher_b, student_scale, teacher_scale)
    loss, _, _ = torch.ops.zoo.relation_kl(
        student_a, student_b, teacher_a.detach(), teacher_b.detach(), float(student_scale), float(teacher_scale)
    )
    return loss


class RelationKLLoss(_dispatch.OpModule):
    """:func:`relation_kl` as a module (``impl``: see ``zoo.ops``): TinyMIM's relation loss
    KL(softmax(t_a t_bᵀ·teacher_scale) ‖ softmax(s_a s_bᵀ·student_scale))."""

    op = OP

    def __init__(self, student_scale: float, teacher_scale: float, impl: str = "reference"):
        super().__init__(impl)
        self.student_scale, self.teacher_scale = float(student_scale), float(teacher_scale)

    def forward(self, student_a: Tensor, student_b: Tensor, teacher_a: Tensor, teacher_b: Tensor) -> Tensor:
        return relation_kl(
            student_a, student_b, teacher_a, teacher_b, self.student_scale, self.teacher_scale, impl=self.impl
        )

    def extra_repr(self) -> str:
        return f"student_scale={self.student_scale:.4g}, teacher_scale={self.teacher_scale:.4g}, impl={self.impl}"


# --------------------------------------------------------------------------------------------------------------
# Triton kernels (plain functions; zoo.ops._dispatch.jit decorates them on first use).
# Layout: every input is a contiguous (B·H, rows, d) block; one program handles BLOCK_N rows of one (b, h).


def _fwd_kernel(
    SA,
    SB,
    TA,
    TB,
    KL,
    LSE_S,
    LSE_T,
    N,
    M,
    DS,
    DT,
    s_scale,
    t_scale,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_DS: tl.constexpr,
    BLOCK_DT: tl.constexpr,
):
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    ds = tl.arange(0, BLOCK_DS)
    dt = tl.arange(0, BLOCK_DT)
    sa = tl.load(
        SA + bh * N * DS + rows[:, None] * DS + ds[None, :], mask=row_ok[:, None] & (ds[None, :] < DS), other=0.0
    )
    ta = tl.load(
        TA + bh * N * DT + rows[:, None] * DT + dt[None, :], mask=row_ok[:, None] & (dt[None, :] < DT), other=0.0
    )
    m_s = tl.full([BLOCK_N], float("-inf"), tl.float32)
    l_s = tl.zeros([BLOCK_N], tl.float32)
    m_t = tl.full([BLOCK_N], float("-inf"), tl.float32)
    l_t = tl.zeros([BLOCK_N], tl.float32)
    acc = tl.zeros([BLOCK_N], tl.float32)  # Σ_j exp(T_ij − m_t)(T_ij − S_ij), rescaled as m_t grows
    for start in range(0, M, BLOCK_M):
        cols = start + tl.arange(0, BLOCK_M)
        col_ok = cols < M
        sb = tl.load(
            SB + bh * M * DS + cols[:, None] * DS + ds[None, :], mask=col_ok[:, None] & (ds[None, :] < DS), other=0.0
        )
        tb = tl.load(
            TB + bh * M * DT + cols[:, None] * DT + dt[None, :], mask=col_ok[:, None] & (dt[None, :] < DT), other=0.0
        )
        s = tl.dot(sa, tl.trans(sb)).to(tl.float32) * s_scale
        t = tl.dot(ta, tl.trans(tb)).to(tl.float32) * t_scale
        t_minus_s = t - s  # before masking: padded columns would give −inf − (−inf)
        s = tl.where(col_ok[None, :], s, float("-inf"))
        t = tl.where(col_ok[None, :], t, float("-inf"))
        m_s_new = tl.maximum(m_s, tl.max(s, 1))
        l_s = l_s * tl.exp(m_s - m_s_new) + tl.sum(tl.exp(s - m_s_new[:, None]), 1)
        m_s = m_s_new
        m_t_new = tl.maximum(m_t, tl.max(t, 1))
        alpha = tl.exp(m_t - m_t_new)
        e_t = tl.exp(t - m_t_new[:, None])
        l_t = l_t * alpha + tl.sum(e_t, 1)
        acc = acc * alpha + tl.sum(e_t * t_minus_s, 1)  # e_t is 0 on padded columns
        m_t = m_t_new
    lse_s = m_s + tl.log(l_s)
    lse_t = m_t + tl.log(l_t)
    kl = acc / l_t - lse_t + lse_s
    out = bh * N + rows
    tl.store(KL + out, kl, mask=row_ok)
    tl.store(LSE_S + out, lse_s, mask=row_ok)
    tl.store(LSE_T + out, lse_t, mask=row_ok)


def _bwd_rows_kernel(
    SA,
    SB,
    TA,
    TB,
    LSE_S,
    LSE_T,
    DSA,
    N,
    M,
    DS,
    DT,
    s_scale,
    t_scale,
    g_scale,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_DS: tl.constexpr,
    BLOCK_DT: tl.constexpr,
):
    # ∂L/∂s_a[i] = g_scale · Σ_j (Q_ij − P_ij) s_b[j]
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    rows = pid * BLOCK_N + tl.arange(0, BLOCK_N)
    row_ok = rows < N
    ds = tl.arange(0, BLOCK_DS)
    dt = tl.arange(0, BLOCK_DT)
    sa = tl.load(
        SA + bh * N * DS + rows[:, None] * DS + ds[None, :], mask=row_ok[:, None] & (ds[None, :] < DS), other=0.0
    )
    ta = tl.load(
        TA + bh * N * DT + rows[:, None] * DT + dt[None, :], mask=row_ok[:, None] & (dt[None, :] < DT), other=0.0
    )
    lse_s = tl.load(LSE_S + bh * N + rows, mask=row_ok, other=0.0)
    lse_t = tl.load(LSE_T + bh * N + rows, mask=row_ok, other=0.0)
    dsa = tl.zeros([BLOCK_N, BLOCK_DS], tl.float32)
    for start in range(0, M, BLOCK_M):
        cols = start + tl.arange(0, BLOCK_M)
        col_ok = cols < M
        sb = tl.load(
            SB + bh * M * DS + cols[:, None] * DS + ds[None, :], mask=col_ok[:, None] & (ds[None, :] < DS), other=0.0
        )
        tb = tl.load(
            TB + bh * M * DT + cols[:, None] * DT + dt[None, :], mask=col_ok[:, None] & (dt[None, :] < DT), other=0.0
        )
        s = tl.dot(sa, tl.trans(sb)).to(tl.float32) * s_scale
        t = tl.dot(ta, tl.trans(tb)).to(tl.float32) * t_scale
        d = tl.exp(s - lse_s[:, None]) - tl.exp(t - lse_t[:, None])
        d = tl.where(row_ok[:, None] & col_ok[None, :], d, 0.0)
        dsa += tl.dot(d.to(sb.dtype), sb)
    dsa = dsa * g_scale
    tl.store(
        DSA + bh * N * DS + rows[:, None] * DS + ds[None, :],
        dsa.to(DSA.dtype.element_ty),
        mask=row_ok[:, None] & (ds[None, :] < DS),
    )


def _bwd_cols_kernel(
    SA,
    SB,
    TA,
    TB,
    LSE_S,
    LSE_T,
    DSB,
    N,
    M,
    DS,
    DT,
    s_scale,
    t_scale,
    g_scale,
    BLOCK_N: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_DS: tl.constexpr,
    BLOCK_DT: tl.constexpr,
):
    # ∂L/∂s_b[j] = g_scale · Σ_i (Q_ij − P_ij) s_a[i]
    pid = tl.program_id(0)
    bh = tl.program_id(1).to(tl.int64)
    cols = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    col_ok = cols < M
    ds = tl.arange(0, BLOCK_DS)
    dt = tl.arange(0, BLOCK_DT)
    sb = tl.load(
        SB + bh * M * DS + cols[:, None] * DS + ds[None, :], mask=col_ok[:, None] & (ds[None, :] < DS), other=0.0
    )
    tb = tl.load(
        TB + bh * M * DT + cols[:, None] * DT + dt[None, :], mask=col_ok[:, None] & (dt[None, :] < DT), other=0.0
    )
    dsb = tl.zeros([BLOCK_M, BLOCK_DS], tl.float32)
    for start in range(0, N, BLOCK_N):
        rows = start + tl.arange(0, BLOCK_N)
        row_ok = rows < N
        sa = tl.load(
            SA + bh * N * DS + rows[:, None] * DS + ds[None, :], mask=row_ok[:, None] & (ds[None, :] < DS), other=0.0
        )
        ta = tl.load(
            TA + bh * N * DT + rows[:, None] * DT + dt[None, :], mask=row_ok[:, None] & (dt[None, :] < DT), other=0.0
        )
        lse_s = tl.load(LSE_S + bh * N + rows, mask=row_ok, other=0.0)
        lse_t = tl.load(LSE_T + bh * N + rows, mask=row_ok, other=0.0)
        s = tl.dot(sa, tl.trans(sb)).to(tl.float32) * s_scale
        t = tl.dot(ta, tl.trans(tb)).to(tl.float32) * t_scale
        d = tl.exp(s - lse_s[:, None]) - tl.exp(t - lse_t[:, None])
        d = tl.where(row_ok[:, None] & col_ok[None, :], d, 0.0)
        dsb += tl.dot(tl.trans(d).to(sa.dtype), sa)
    dsb = dsb * g_scale
    tl.store(
        DSB + bh * M * DS + cols[:, None] * DS + ds[None, :],
        dsb.to(DSB.dtype.element_ty),
        mask=col_ok[:, None] & (ds[None, :] < DS),
    )


def _blocks(sa, ta):
    n = sa.shape[2]
    block_ds = max(16, _dispatch.next_pow2(sa.shape[-1]))
    block_dt = max(16, _dispatch.next_pow2(ta.shape[-1]))
    # Register budget on the GPU: the (rows × d) tiles of student and teacher stay resident.
    block = 64 if max(block_ds, block_dt) <= 64 else 32
    if sa.device.type == "cpu":  # interpreter: fewer, larger programs are faster
        block = max(16, min(64, _dispatch.next_pow2(n)))
    return block, block_ds, block_dt


def _flat(x):
    return x.reshape(-1, x.shape[-2], x.shape[-1]).contiguous()


def _use_kernel(*tensors) -> bool:
    """Inside the op: the Triton kernel on CUDA, or on CPU under TRITON_INTERPRET=1; else torch math."""
    return _dispatch.kernel_error(tensors[0].device) is None


def _fwd_torch(sa, sb, ta, tb, s_scale, t_scale):
    s = torch.matmul(sa.float(), sb.float().transpose(-1, -2)) * s_scale
    t = torch.matmul(ta.float(), tb.float().transpose(-1, -2)) * t_scale
    lse_s, lse_t = torch.logsumexp(s, -1), torch.logsumexp(t, -1)
    kl = (torch.exp(t - lse_t[..., None]) * (t - s)).sum(-1) - lse_t + lse_s
    return kl, lse_s, lse_t


@torch.library.custom_op("zoo::relation_kl", mutates_args=())
def _relation_kl_op(
    student_a: Tensor,
    student_b: Tensor,
    teacher_a: Tensor,
    teacher_b: Tensor,
    student_scale: float,
    teacher_scale: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """(loss, lse_student (B, H, N), lse_teacher (B, H, N)); the log-sum-exps are saved for the backward."""
    B, H, N, _ = student_a.shape
    M = student_b.shape[2]
    if not _use_kernel(student_a):
        kl, lse_s, lse_t = _fwd_torch(student_a, student_b, teacher_a, teacher_b, student_scale, teacher_scale)
        return kl.mean(), lse_s, lse_t
    sa, sb, ta, tb = (_flat(x) for x in (student_a, student_b, teacher_a, teacher_b))
    kl = torch.empty(B * H * N, device=sa.device, dtype=torch.float32)
    lse_s, lse_t = torch.empty_like(kl), torch.empty_like(kl)
    block, block_ds, block_dt = _blocks(student_a, teacher_a)
    grid = (_dispatch.cdiv(N, block), B * H)
    _dispatch.jit(_fwd_kernel)[grid](
        sa,
        sb,
        ta,
        tb,
        kl,
        lse_s,
        lse_t,
        N,
        M,
        sa.shape[-1],
        ta.shape[-1],
        float(student_scale),
        float(teacher_scale),
        BLOCK_N=block,
        BLOCK_M=block,
        BLOCK_DS=block_ds,
        BLOCK_DT=block_dt,
    )
    return kl.mean(), lse_s.view(B, H, N), lse_t.view(B, H, N)


@_relation_kl_op.register_fake
def _(student_a, student_b, teacher_a, teacher_b, student_scale, teacher_scale):
    stats = student_a.new_empty(student_a.shape[:3], dtype=torch.float32)
    return student_a.new_empty((), dtype=torch.float32), stats, torch.empty_like(stats)


@torch.library.custom_op("zoo::relation_kl_backward", mutates_args=())
def _relation_kl_backward_op(
    grad: Tensor,
    student_a: Tensor,
    student_b: Tensor,
    teacher_a: Tensor,
    teacher_b: Tensor,
    lse_s: Tensor,
    lse_t: Tensor,
    student_scale: float,
    teacher_scale: float,
) -> tuple[Tensor, Tensor]:
    B, H, N, _ = student_a.shape
    M = student_b.shape[2]
    if not _use_kernel(student_a):
        s = torch.matmul(student_a.float(), student_b.float().transpose(-1, -2)) * student_scale
        t = torch.matmul(teacher_a.float(), teacher_b.float().transpose(-1, -2)) * teacher_scale
        d = (torch.exp(s - lse_s[..., None]) - torch.exp(t - lse_t[..., None])) * (grad * student_scale / (B * H * N))
        return (
            (d @ student_b.float()).to(student_a.dtype),
            (d.transpose(-1, -2) @ student_a.float()).to(student_b.dtype),
        )
    sa, sb, ta, tb = (_flat(x) for x in (student_a, student_b, teacher_a, teacher_b))
    lse_s, lse_t = lse_s.contiguous(), lse_t.contiguous()
    dsa, dsb = torch.empty_like(sa), torch.empty_like(sb)
    block, block_ds, block_dt = _blocks(student_a, teacher_a)
    g_scale = float(student_scale) / (B * H * N)
    args = (sa, sb, ta, tb, lse_s, lse_t)
    sizes = (N, M, sa.shape[-1], ta.shape[-1], float(student_scale), float(teacher_scale), g_scale)
    meta = dict(BLOCK_N=block, BLOCK_M=block, BLOCK_DS=block_ds, BLOCK_DT=block_dt)
    _dispatch.jit(_bwd_rows_kernel)[(_dispatch.cdiv(N, block), B * H)](*args, dsa, *sizes, **meta)
    _dispatch.jit(_bwd_cols_kernel)[(_dispatch.cdiv(M, block), B * H)](*args, dsb, *sizes, **meta)
    # The upstream gradient is a 0-d tensor: scaling here keeps the kernels free of a device-to-host sync.
    dsa = (dsa * grad).view(student_a.shape)
    dsb = (dsb * grad).view(student_b.shape)
    return dsa.to(student_a.dtype), dsb.to(student_b.dtype)


@_relation_kl_backward_op.register_fake
def _(grad, student_a, student_b, teacher_a, teacher_b, lse_s, lse_t, student_scale, teacher_scale):
    return torch.empty_like(student_a), torch.empty_like(student_b)


def _setup_context(ctx, inputs, output):
    student_a, student_b, teacher_a, teacher_b, student_scale, teacher_scale = inputs
    _, lse_s, lse_t = output
    ctx.save_for_backward(student_a, student_b, teacher_a, teacher_b, lse_s, lse_t)
    ctx.scales = (student_scale, teacher_scale)
    ctx.mark_non_differentiable(lse_s, lse_t)


def _backward(ctx, grad, _grad_lse_s, _grad_lse_t):
    student_a, student_b, teacher_a, teacher_b, lse_s, lse_t = ctx.saved_tensors
    dsa, dsb = torch.ops.zoo.relation_kl_backward(
        grad, student_a, student_b, teacher_a, teacher_b, lse_s, lse_t, *ctx.scales
    )
    return dsa, dsb, None, None, None, None


_relation_kl_op.register_autograd(_backward, setup_context=_setup_context)
