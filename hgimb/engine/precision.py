"""Mixed precision (``--amp``): the model's forward pass under ``torch.autocast``, the loss and the
optimiser in float32.

Modes (``RunConfig.amp``): ``off``; ``on`` = bfloat16 on CPU, float16 with a gradient scaler on
CUDA; ``bf16`` / ``fp16`` choose the type (``fp16`` on CUDA only: CPU kernels for float16 are
few and slow). Autocast runs the matrix products of PyG / torch layers in the low precision and
keeps reductions and the loss in float32; hgimb's own sparse kernels take the dtype of the
dense operand they are given. The logits are cast back to float32 before the remedy's loss, so
every remedy sees the same dtype as without ``--amp``.
"""
from __future__ import annotations

import contextlib

import torch

from ..errors import HgimbError

AMP_MODES = ("off", "on", "bf16", "fp16")


class Precision:
    """Autocast settings of one run, and the backward/step that goes with them."""

    def __init__(self, mode: str, device: torch.device):
        if mode not in AMP_MODES:
            raise HgimbError(f"--amp must be one of {', '.join(AMP_MODES)}, got '{mode}'")
        self.device_type = torch.device(device).type
        cuda = self.device_type == "cuda"
        if mode == "fp16" and not cuda:
            raise HgimbError("--amp fp16 needs --device cuda; on CPU use --amp bf16 (or --amp on)")
        self.dtype = {"off": None, "on": torch.float16 if cuda else torch.bfloat16,
                      "bf16": torch.bfloat16, "fp16": torch.float16}[mode]
        # float16 gradients underflow without loss scaling; bfloat16 has float32's range
        self.scaler = torch.amp.GradScaler("cuda") if self.dtype == torch.float16 else None

    @property
    def enabled(self) -> bool:
        return self.dtype is not None

    def autocast(self):
        if not self.enabled:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.dtype)

    def output(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits for the loss and the metrics: float32 under autocast, untouched without it."""
        return logits.float() if self.enabled else logits

    def backward_step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        """``loss.backward()`` then ``optimizer.step()``, through the gradient scaler when there is one."""
        if self.scaler is None:
            loss.backward()
            optimizer.step()
            return
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()
