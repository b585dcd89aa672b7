"""Choosing between a Triton kernel and the PyTorch reference (``impl="auto" | "triton" | "reference"``), and
``OpModule``, the base of each op's nn.Module form (whose ``impl`` ``zoo.callbacks.FusedKernels`` switches).

Triton comes with the Linux CUDA wheels of torch, not with CPU-only ones; each op file imports it itself (guarded)
when it is first used. Kernels are compiled, or run by Triton's interpreter when ``TRITON_INTERPRET=1`` (CPU tensors,
one program at a time; the tests use it), and ``triton.jit`` chooses between the two when a kernel is decorated, so
each op file keeps its kernels as plain functions and :func:`jit` decorates them, once per mode.
"""

from __future__ import annotations

import functools
import os

import torch
from torch import nn

from zoo.ops import OPS

IMPLS = ("auto", "triton", "reference")


@functools.cache
def triton_import_error() -> str | None:
    """None when Triton imports, else why it does not."""
    try:
        import triton  # noqa: F401
        import triton.language  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        return f"triton is not importable ({type(e).__name__}: {e}); install the CUDA build of torch, which brings it"
    return None


def interpret_mode() -> bool:
    """True when Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    if os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes"):
        return True
    if triton_import_error() is None:
        try:
            from triton import knobs

            return bool(knobs.runtime.interpret)
        except Exception:
            return False
    return False


def interpreter_ready() -> bool:
    """True when Triton was imported in interpreter mode: its own library functions (``tl.zeros``, ``tl.sum``, ...)
    are decorated at import, so setting ``TRITON_INTERPRET=1`` after ``import triton`` is too late."""
    if triton_import_error() is not None:
        return False
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction

    return isinstance(tl.zeros, InterpretedFunction)


def cuda_kernel_error() -> str | None:
    """None when compiled kernels can run on the current CUDA device, else why not."""
    err = triton_import_error()
    if err:
        return err
    if not torch.cuda.is_available():
        return "no CUDA device (the reference runs; TRITON_INTERPRET=1 runs the kernel on CPU tensors, slowly)"
    if torch.version.hip is None and torch.cuda.get_device_capability() < (7, 0):
        return f"CUDA capability {torch.cuda.get_device_capability()} < 7.0 is not supported by Triton"
    return None


def kernel_error(device) -> str | None:
    """None when the kernel can run on tensors of ``device`` (a device or its type string), else why not."""
    kind = getattr(device, "type", device)
    if kind == "cuda":
        return cuda_kernel_error()
    if kind == "cpu":
        err = triton_import_error()
        if err:
            return err
        if not interpret_mode():
            return (
                "the tensors are on the CPU and TRITON_INTERPRET is not set (compiled Triton kernels need CUDA "
                "tensors); set TRITON_INTERPRET=1 before triton is first imported to run it in Triton's interpreter"
            )
        if not interpreter_ready():
            return (
                "TRITON_INTERPRET=1 was set after triton had been imported (importing lightning imports it), "
                "so Triton's own functions are compiled-mode; set it in the environment before starting Python"
            )
        return None
    return f"Triton kernels do not run on {kind!r} tensors"


# A property of the process that torch.compile need not trace: what ``torch.compiler.assume_constant_result`` sets,
# set directly because that function imports torch._dynamo (seconds) at decoration time.
kernel_error._dynamo_marked_constant = True


def check_impl(op: str, impl: str) -> None:
    if impl not in IMPLS:
        raise ValueError(f"zoo.ops.{op}: impl must be one of {IMPLS}, got {impl!r}")


def resolve(op: str, impl: str, *tensors) -> str:
    """``"triton"`` or ``"reference"`` for ``impl`` given the input tensors; raises where ``"triton"`` cannot run."""
    check_impl(op, impl)
    if impl == "reference":
        return "reference"
    devices = {t.device.type for t in tensors if t is not None}
    if len(devices) > 1:
        raise ValueError(f"zoo.ops.{op}: all tensors must be on one device, got {sorted(devices)}")
    device = devices.pop() if devices else "cpu"
    err = kernel_error(device)
    if impl == "auto":
        return "triton" if device == "cuda" and err is None else "reference"
    if err:
        raise RuntimeError(f"zoo.ops.{op}(impl='triton') cannot run: {err}. Use impl='auto' or impl='reference'.")
    return "triton"


# Kernels are decorated once per mode (compiled / interpreted): triton.jit picks the mode at decoration time.
_JITTED: dict = {}


def jit(fn):
    """``triton.jit(fn)`` for the current mode; ``fn`` is a module-level kernel function of an op file (which
    imports ``triton.language as tl`` itself)."""
    key = (fn.__module__, fn.__qualname__, interpret_mode())
    if key not in _JITTED:
        import triton

        _JITTED[key] = triton.jit(fn)
    return _JITTED[key]


def cdiv(a: int, b: int) -> int:
    return -(-a // b)


def next_pow2(n: int) -> int:
    return 1 << max(0, int(n) - 1).bit_length()


def available() -> dict[str, str]:
    """Per op: ``"available"`` (kernel runs on this machine's CUDA device), ``"available (interpreter)"`` under
    ``TRITON_INTERPRET=1``, or the reason the kernel cannot run (then ``impl="auto"`` runs the reference)."""
    err = cuda_kernel_error()
    if err is None:
        status = "available"
    elif triton_import_error() is None and interpret_mode():
        status = "available (TRITON_INTERPRET=1: Triton's interpreter on CPU tensors, for testing)"
    else:
        status = f"reference only: {err}"
    return {op: status for op in OPS}


class OpModule(nn.Module):
    """The nn.Module form of one zoo op (class attribute ``op``): its ``forward`` calls the op with
    ``impl=self.impl``. ``impl`` is an init argument, which a LightningModule exposes as its own (TinyMIM's
    ``relation_impl``) so that YAML can set it, as transformers' ``attn_implementation``; ``zoo.callbacks.FusedKernels``
    (and the ``zoo_*`` strategies, which use it) set it to ``"triton"`` on every op module of a model for one run and
    put the previous value back after. Op modules hold no parameters or buffers: the choice never changes a
    ``state_dict``."""

    op: str = ""

    def __init__(self, impl: str = "reference"):
        super().__init__()
        check_impl(self.op, impl)
        self.impl = impl
