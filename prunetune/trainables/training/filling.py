"""Hybrid filled (Lagunas et al. 2021): keep the pruned structure, give live heads their zeros back.

After pruning, compaction decides the structure: which heads and FFN neurons survive, and
therefore the speed. Inside a surviving head, block pruning has left zero blocks that cost
the same time as non-zero ones (surviving blocks run as dense matrices). Filling
re-initialises exactly those zeros, in Q, K, V rows (and biases) and attention-output
columns of live heads and in live FFN neurons, and the compacted student distils again for
``trial.fill_steps`` steps: same speed, recovered accuracy.

``trial.fill_init``: ``teacher`` gives each zero back the dense teacher's value at that
position (the student started as a copy of the teacher, so this is the value it had
before pruning and the best-informed initialisation); ``random`` draws it from the model's
own initialiser, N(0, initializer_range), with biases at 0 as at initialisation.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from prunetune.trainables.families import family_of
from prunetune.trainables.families._modeling import LayerView, layer_views
from prunetune.trainables.families.compaction import live_heads, live_neurons
from prunetune.trainables.training.batches import BatchPlan, take
from prunetune.trainables.training.distill import distillation_loss
from prunetune.trainables.training.optimisation import optimiser_step
from prunetune.trainables.training.precision import autocast_context, grad_scaler
from prunetune.trainables.training.training_set import DistillationSet

#: Extra metrics of a filled trial: weights re-initialised, and seconds of fine-tuning after filling.
FILLED_WEIGHTS = "filled_weights"
FILL_SECONDS = "fill_seconds"


def live_structure_masks(view: LayerView) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """For each prunable map of a layer: (weight positions, bias positions) inside live structure."""
    device = view.linear("query").weight.device
    units_alive = torch.zeros(view.num_units, dtype=torch.bool, device=device)
    units_alive[live_heads(view)] = True
    unit_rows = {role: units_alive.repeat_interleave(view.unit_rows(role))
                 for role in ("query", "key", "value", "attention_output")}
    neurons = torch.zeros(view.ffn_width, dtype=torch.bool, device=device)
    neurons[live_neurons(view)] = True
    linears = view.linears()
    rows = lambda selected, role: selected[:, None].expand_as(linears[role].weight)  # noqa: E731
    cols = lambda selected, role: selected[None, :].expand_as(linears[role].weight)  # noqa: E731
    return {
        **{role: (rows(unit_rows[role], role), unit_rows[role]) for role in ("query", "key", "value")},
        "attention_output": (cols(unit_rows["attention_output"], "attention_output"), None),
        "ffn_in": (rows(neurons, "ffn_in"), neurons),
        "ffn_out": (cols(neurons, "ffn_out"), None),
    }


@torch.no_grad()
def fill_live_zeros(model: nn.Module, *, source: nn.Module | None, init_std: float,
                    generator: torch.Generator | None = None) -> int:
    """Re-initialise every zero weight (and zero Q/K/V/FFN bias) inside live heads and live FFN
    neurons of ``model``, in place; dead structure stays exactly zero. Returns the number of
    weights filled.

    With ``source`` (a dense model of the same architecture) the zeros take its values;
    without, N(0, init_std) for weights and 0 for biases.
    """
    filled = 0
    views = layer_views(model, family_of(model))
    source_views = layer_views(source, family_of(source)) if source is not None else [None] * len(views)
    for view, source_view in zip(views, source_views):
        if view.emptied:
            continue  # a removed layer has no maps to fill
        masks = live_structure_masks(view)
        sources = source_view.linears() if source_view is not None else {}
        for role, linear in view.linears().items():
            weight_live, bias_live = masks[role]
            holes = weight_live & linear.weight.eq(0)
            if not holes.any():
                continue  # e.g. structured pruning, which leaves no zeros inside live units
            if role in sources and sources[role].weight.shape != linear.weight.shape:
                raise ValueError(f"fill source {role} is {tuple(sources[role].weight.shape)}, the model's "
                                 f"{tuple(linear.weight.shape)}; fill before compaction, from a model of the same shape")
            filled += int(holes.sum())
            linear.weight[holes] = _values(sources.get(role), "weight", holes, init_std, generator)
            if bias_live is not None and role in sources and linear.bias is not None:
                bias_holes = bias_live & linear.bias.eq(0)
                linear.bias[bias_holes] = sources[role].bias.to(linear.bias)[bias_holes]
    return filled


def _values(source: nn.Linear | None, attribute: str, holes: torch.Tensor, std: float,
            generator: torch.Generator | None) -> torch.Tensor:
    if source is not None:
        return getattr(source, attribute).detach().to(holes.device)[holes]
    count = int(holes.sum())
    return (torch.randn(count, generator=generator) * std).to(holes.device)


def distil(model: nn.Module, data: DistillationSet, *, steps: int, batch_size: int, seed: int, learning_rate: float,
           temperature: float, alpha: float, precision: str, device: torch.device, kind=None) -> tuple[float, float]:
    """Fine-tune ``model`` (every weight free) with distillation for ``steps`` steps.

    Returns (last loss, wall seconds).
    """
    started = time.perf_counter()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=learning_rate, weight_decay=0.01)
    scaler, autocast = grad_scaler(precision, device), autocast_context(precision, device)
    # A seed apart from the pruning phase's, so filling does not replay its first batches.
    plan = BatchPlan(len(data), batch_size, seed + 1)
    model.train()
    with torch.enable_grad():  # callers may hold no_grad (the end of a trial does)
        suspects = (f"trial.precision = {precision!r}, trial.learning_rate = {learning_rate!r}, "
                    f"trial.temperature = {temperature!r}")
        loss_value = _distil_loop(model, data, plan, optimizer, scaler, autocast, steps=steps, temperature=temperature,
                                  alpha=alpha, device=device, description=suspects, kind=kind)
    model.eval()
    return loss_value, time.perf_counter() - started


def _distil_loop(model, data: DistillationSet, plan: BatchPlan, optimizer, scaler, autocast, *, steps: int,
                 temperature: float, alpha: float, device: torch.device, description: str, kind=None) -> float:
    loss_value = float("nan")
    for step in range(steps):
        indices = plan.indices(step)
        with autocast:
            outputs = model(**take(data.inputs, indices, device))
        teacher, targets = data.teacher_logits[indices].to(device), data.labels[indices].to(device)
        if kind is None:  # classification
            loss = distillation_loss(outputs.logits, teacher, targets, temperature=temperature, alpha=alpha)
        else:
            loss = kind.distillation_loss(kind.head_output(outputs), teacher, targets, temperature=temperature,
                                          alpha=alpha)
        loss_value = optimiser_step(loss, model, optimizer, scaler,
                                    describe=lambda: f"step {step} of the filled fine-tuning; the keys most likely "
                                                    f"behind it: {description}")
    return loss_value
