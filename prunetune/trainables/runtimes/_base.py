"""The interface every serving runtime declares (no torch at import: configuration validation reads it).

A runtime says which inference precisions it serves on which device, which packages it
needs, how it serves a compacted PyTorch model (the trial's student, a latency table's
model) and the dense teacher, how it opens again what a trial saved (re-timing, export),
which files it ships beside the PyTorch model, and how a user loads them. The trial, the
latency table, re-timing, the export and the model card never branch on a runtime's name:
they call these methods.

A runtime that serves from files (an ONNX graph, an OpenVINO IR) is a :class:`FileRuntime`:
it implements :meth:`~FileRuntime.build` (write them into a directory) and
:meth:`~FileRuntime.open` (serve them); serving, loading, the teacher's cache and what an
export ships are then the same for every such runtime.
"""

from __future__ import annotations

import importlib.util
import shutil
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from prunetune.errors import DeviceError

if TYPE_CHECKING:
    import torch

#: The files a saved tokenizer may consist of (transformers' slow and fast tokenizers).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "sentencepiece.bpe.model", "spm.model",
                   "tokenizer.model")

#: Calibration inputs: one feed per example, input name -> int64 numpy array of shape (1, length).
Calibration = Sequence[dict[str, Any]]


@dataclass
class Served:
    """A model ready to serve: what is measured, the device it runs on, and the file it ships as."""

    model: Any  # nn.Module or a runtime's session: called with the tokenizer's tensors, returns .logits
    device: "torch.device"
    runtime: str
    precision: str
    artifact: Path | None = None  # the main file measured (a graph runtime's), None for PyTorch


class Runtime(ABC):
    """One serving runtime, as the trial, the tables, re-timing and the export see it."""

    name: ClassVar[str]
    #: How the model card and the report name it ("ONNX Runtime").
    label: ClassVar[str]
    #: Device kind ("cpu", "cuda") -> the inference precisions served there.
    precisions: ClassVar[dict[str, tuple[str, ...]]]
    #: Import names of the packages it needs, and how to install them when they are missing.
    packages: ClassVar[tuple[str, ...]] = ()
    install: ClassVar[str] = ""

    # ------------------------------------------------------------------ validation (no torch)

    @property
    def all_precisions(self) -> tuple[str, ...]:
        served = [precision for kind in self.precisions.values() for precision in kind]
        return tuple(dict.fromkeys(served))

    def pairing_problems(self, precision: str) -> list[str]:
        """Why this runtime can never serve ``precision`` (the same on every machine)."""
        if precision in self.all_precisions:
            return []
        where = "; ".join(f"{', '.join(served)} on {kind}" for kind, served in self.precisions.items())
        return [f"trial.inference_precision = {precision!r} with trial.runtime = {self.name!r}: {self.name} serves "
                f"{where}"]

    def missing_packages(self) -> list[str]:
        return [name for name in self.packages if importlib.util.find_spec(name) is None]

    def installed_problems(self) -> list[str]:
        missing = self.missing_packages()
        if not missing:
            return []
        return [f"trial.runtime = {self.name!r} needs the package(s) {', '.join(missing)}, which are not installed "
                f"here: {self.install}"]

    # ------------------------------------------------------------------ on a worker

    def serving_device(self, precision: str, device: "torch.device") -> "torch.device":
        """Where ``precision`` is served for a trial on ``device``: there when the runtime serves it
        there, else on the CPU (int8 on a GPU worker is a CPU deployment)."""
        import torch

        served_there = precision in self.precisions.get(device.type, ())
        return device if served_there else torch.device("cpu")

    def device_problems(self, precision: str, device: "torch.device") -> list[str]:
        """Why this worker cannot serve ``precision`` (checked before any work starts)."""
        kind = self.serving_device(precision, device).type
        if precision in self.precisions.get(kind, ()):
            return []
        where = "; ".join(f"{', '.join(served)} on {k}" for k, served in self.precisions.items())
        return [f"trial.inference_precision = {precision!r} with trial.runtime = {self.name!r} on a {device.type} "
                f"worker: {self.name} serves {where}"]

    def check_device(self, precision: str, device: "torch.device") -> None:
        problems = self.device_problems(precision, device)
        if problems:
            raise DeviceError("; ".join(problems))

    # ------------------------------------------------------------------ serving

    @abstractmethod
    def serve(self, model: "torch.nn.Module", *, precision: str, device: "torch.device", threads: int | None = None,
              work_dir: str | Path | None = None, calibration: Calibration | None = None) -> Served:
        """``model`` (compacted, fp32) served at ``precision``; the input model may be modified.

        ``calibration``: inputs a post-training quantiser calibrates on (the trial's training
        texts); without them a quantiser calibrates on random tokens, which is right only where
        no accuracy is read (the teacher's latency, a latency table).
        """

    @abstractmethod
    def load(self, model_dir: str | Path, *, precision: str, device: "torch.device",
             threads: int | None = None) -> Served:
        """What a trial saved in ``model_dir``, served as the trial served it (re-timing)."""

    @abstractmethod
    def serve_teacher(self, load_teacher: Callable[[], "torch.nn.Module"], *, precision: str,
                      device: "torch.device", threads: int | None, cache_dir: str | Path) -> Served:
        """The dense teacher (``load_teacher()``) at ``precision``."""

    def save(self, model: "torch.nn.Module", model_dir: Path, *, precision: str, device: "torch.device",
             calibration: Calibration | None = None) -> None:
        """Write beside a saved compacted model what :meth:`load` needs to serve it: nothing for a
        runtime that serves the model itself."""

    @abstractmethod
    def usage(self, precision: str, pipeline_task: str) -> str:
        """Markdown for the model card: what in the directory was measured and how to load it."""


class FileRuntime(Runtime):
    """A runtime that serves from files it writes (an ONNX graph, an OpenVINO IR): the trial saves
    them beside its model, and an export ships them as they were measured."""

    #: Files it writes beside the PyTorch model (the trial's model directory, an export).
    shipped_files: ClassVar[tuple[str, ...]]

    @abstractmethod
    def build(self, model: "torch.nn.Module", directory: Path, *, precision: str, device: "torch.device",
              calibration: Calibration | None) -> None:
        """Write the runtime's files for ``model`` at ``precision`` into ``directory``."""

    @abstractmethod
    def open(self, directory: Path, *, precision: str, device: "torch.device", threads: int | None) -> Served:
        """Serve the runtime's files in ``directory``."""

    def serve(self, model: "torch.nn.Module", *, precision: str, device: "torch.device", threads: int | None = None,
              work_dir: str | Path | None = None, calibration: Calibration | None = None) -> Served:
        """See :meth:`Runtime.serve`; the files are written into ``work_dir`` (required)."""
        if work_dir is None:
            raise ValueError(f"serve(runtime={self.name!r}) needs a work_dir for its files")
        serving = self.serving_device(precision, device)
        self.build(model, Path(work_dir), precision=precision, device=serving, calibration=calibration)
        return self.open(Path(work_dir), precision=precision, device=serving, threads=threads)

    def save(self, model: "torch.nn.Module", model_dir: Path, *, precision: str, device: "torch.device",
             calibration: Calibration | None = None) -> None:
        self.build(model, Path(model_dir), precision=precision, device=self.serving_device(precision, device),
                   calibration=calibration)

    def load(self, model_dir: str | Path, *, precision: str, device: "torch.device",
             threads: int | None = None) -> Served:
        return self.open(Path(model_dir), precision=precision, device=self.serving_device(precision, device),
                         threads=threads)

    def serve_teacher(self, load_teacher: Callable[[], "torch.nn.Module"], *, precision: str,
                      device: "torch.device", threads: int | None, cache_dir: str | Path) -> Served:
        """The teacher's files built once per teacher cache
        (``cache_dir/runtimes/<runtime>-<precision>-<device>``) and reused by every trial of the node."""
        from filelock import FileLock

        serving = self.serving_device(precision, device)
        directory = Path(cache_dir) / "runtimes" / f"{self.name}-{precision}-{serving.type}"
        directory.mkdir(parents=True, exist_ok=True)
        with FileLock(str(directory / ".lock")):
            if not self.is_saved_in(directory):
                staging = directory / "staging"
                shutil.rmtree(staging, ignore_errors=True)
                self.build(load_teacher(), staging, precision=precision, device=serving, calibration=None)
                for name in self.shipped_files:  # the files last: a crash never leaves half a cache
                    (staging / name).replace(directory / name)
                shutil.rmtree(staging, ignore_errors=True)
        return self.open(directory, precision=precision, device=serving, threads=threads)

    # ------------------------------------------------------------------ what ships

    def write_serving_dir(self, model_dir: str | Path, target: str | Path) -> Path:
        """``target``: what serves this runtime's files without prunetune or remote code (the files as
        measured, the tokenizer, and a config of the family's own model type); returns ``target``."""
        import json

        from prunetune.trainables.families.compaction import serving_config

        model_dir, target = Path(model_dir), Path(target)
        target.mkdir(parents=True, exist_ok=True)
        for name in (*self.shipped_files, *TOKENIZER_FILES):
            if (model_dir / name).is_file():
                shutil.copyfile(model_dir / name, target / name)
        config = serving_config(json.loads((model_dir / "config.json").read_text()))
        (target / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        return target

    def is_saved_in(self, model_dir: str | Path) -> bool:
        """Whether ``model_dir`` holds this runtime's files (a trial that served in it saved them)."""
        return all((Path(model_dir) / name).is_file() for name in self.shipped_files)


#: optimum's class suffix for each pipeline task.
_OPTIMUM_HEADS = {"text-classification": "ForSequenceClassification", "token-classification": "ForTokenClassification",
                  "question-answering": "ForQuestionAnswering"}


def optimum_example(module: str, prefix: str, pipeline_task: str, directory: str) -> str:
    """A model card's Python block loading ``directory`` with optimum's class for the task
    (``ORTModelForSequenceClassification`` from ``optimum.onnxruntime``, ``OVModelFor...``)."""
    head = prefix + _OPTIMUM_HEADS.get(pipeline_task, "ForSequenceClassification")
    return (f"```python\nfrom {module} import {head}\nfrom transformers import AutoTokenizer, pipeline\n\n"
            f"model = {head}.from_pretrained(\"{directory}\")\n"
            f"served = pipeline(\"{pipeline_task}\", model=model, "
            f"tokenizer=AutoTokenizer.from_pretrained(\"{directory}\"))\n```\n")
