"""PyTorch eager: the compacted model itself, at fp32, fp16 or bf16, 2:4 sparse fp16 on recent
GPUs, or torch.ao dynamic int8 on the CPU (``training/precision.py`` converts it)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from prunetune.errors import DeviceError
from prunetune.trainables.runtimes._base import Calibration, Runtime, Served

if TYPE_CHECKING:
    import torch

#: How to serve the float32 weights at the precision the latency was measured at.
_SERVING = {
    "fp16": "load it with `dtype=torch.float16` (e.g. `pipeline(..., dtype=torch.float16)`) on a GPU",
    "bf16": "load it with `dtype=torch.bfloat16` (e.g. `pipeline(..., dtype=torch.bfloat16)`)",
    "int8": "quantise it on the CPU with `torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, "
            "dtype=torch.qint8)`",
    "sparse24": "convert its linears with `torch.sparse.to_sparse_semi_structured` at fp16 on a GPU of compute "
                "capability 8.0 or newer (the saved weights are already 2:4 sparse)",
}


class TorchEager(Runtime):
    name = "torch"
    label = "PyTorch eager"
    precisions = {"cpu": ("fp32", "fp16", "bf16", "int8"), "cuda": ("fp32", "fp16", "bf16", "sparse24")}

    def serving_device(self, precision: str, device: "torch.device") -> "torch.device":
        import torch

        return torch.device("cpu") if precision == "int8" else device

    def device_problems(self, precision: str, device: "torch.device") -> list[str]:
        from prunetune.trainables.training.precision import check_inference_precision

        try:
            check_inference_precision(precision, device)
        except DeviceError as error:
            return [str(error)]
        return []

    def serve(self, model, *, precision: str, device, threads: int | None = None, work_dir=None,
              calibration: Calibration | None = None) -> Served:
        from prunetune.trainables.training.precision import to_inference_precision

        return Served(to_inference_precision(model, precision, device), self.serving_device(precision, device),
                      self.name, precision)

    def load(self, model_dir, *, precision: str, device, threads: int | None = None) -> Served:
        from prunetune.trainables.families.compaction import load_compacted

        return self.serve(load_compacted(Path(model_dir)), precision=precision, device=device)

    def serve_teacher(self, load_teacher, *, precision: str, device, threads: int | None, cache_dir) -> Served:
        """The teacher itself at ``precision``; 2:4 sparsity would prune it, so its dense
        counterpart there is the teacher at fp16."""
        return self.serve(load_teacher(), precision="fp16" if precision == "sparse24" else precision, device=device)

    def usage(self, precision: str, pipeline_task: str) -> str:
        if precision == "fp32":
            return ""
        return (f"The weights are saved in float32; the latency was measured at `{precision}`. To serve as "
                f"measured, {_SERVING[precision]}.\n")
