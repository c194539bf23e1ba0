"""What the hardware can do: the device, the autocast dtype, channels_last. Recorded in summary.json."""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

from ..errors import ConfigError

# oneDNN's instruction sets (ONEDNN_MAX_CPU_ISA) below AVX512_CORE_BF16: capped at one of these, oneDNN emulates
# bf16 whatever the CPU has. Measured on a CPU with AMX, capped at AVX2: a 2048x2048 bf16 matmul ran at 0.3 GFLOP/s
# against 112 in fp32, a 64-channel 3x3 convolution 16x slower than fp32; uncapped, bf16 ran 8x faster than fp32.
ONEDNN_WITHOUT_BF16 = {"SSE41", "AVX", "AVX2", "AVX2_VNNI", "AVX2_VNNI_2", "AVX512_CORE", "AVX512_CORE_VNNI"}


def onednn_isa_cap() -> str | None:
    """The instruction set oneDNN is capped at by the environment (ONEDNN_MAX_CPU_ISA, or its older name
    DNNL_MAX_CPU_ISA), upper-cased; None when not capped."""
    value = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return value.strip().upper() if value and value.strip() else None


@lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """AVX512_BF16 or AMX, and oneDNN not capped below them: bf16 matmuls and convolutions run natively (2.5-8x
    faster than fp32 here); elsewhere bf16 is emulated, many times slower than fp32."""
    if onednn_isa_cap() in ONEDNN_WITHOUT_BF16:
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"device: {name!r} was asked for but PyTorch sees no CUDA GPU; use --device cpu or auto")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("device: 'mps' was asked for but is not available here; use --device cpu or auto")
    return device


@dataclass(frozen=True)
class Precision:
    device: torch.device
    autocast_dtype: torch.dtype | None  # None: fp32
    channels_last: bool
    grad_scaler: bool  # fp16 on CUDA needs loss scaling; bf16 does not

    def describe(self) -> dict:
        dtype = {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.autocast_dtype]
        return {"device": str(self.device), "precision": dtype, "channels_last": self.channels_last,
                "grad_scaler": self.grad_scaler,
                "cpu_native_bf16": cpu_has_native_bf16() if self.device.type == "cpu" else None,
                "gpu": torch.cuda.get_device_name(self.device) if self.device.type == "cuda" else None}


def choose_precision(requested: str, device: torch.device, channels_last: bool | None, *,
                     training: bool = True) -> Precision:
    """The autocast dtype and memory format for `requested` (auto: bf16 where the hardware has it, else fp32 on the
    CPU; bf16 or fp16 on a GPU). `training=False`: for inference (no gradient scaler)."""
    if requested == "auto":
        if device.type == "cuda":
            requested = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        elif device.type == "cpu":
            requested = "bf16" if cpu_has_native_bf16() else "fp32"
        else:
            requested = "fp32"
    if requested == "fp16" and device.type == "cpu":
        field = "precision" if training else "inference_precision"
        raise ConfigError(f"{field}: fp16 is not supported on the CPU; use bf16 or fp32")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[requested]
    use_channels_last = channels_last if channels_last is not None else device.type in ("cpu", "cuda")
    return Precision(device, dtype, use_channels_last, training and dtype is torch.float16)
