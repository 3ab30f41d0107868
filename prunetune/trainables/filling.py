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

from prunetune.trainables.batches import BatchPlan, take
from prunetune.trainables.compaction import live_heads, live_neurons
from prunetune.trainables.distill import distillation_loss
from prunetune.trainables.precision import autocast_context, grad_scaler
from prunetune.errors import TrialError
from prunetune.trainables.pruning import bert_layers
from prunetune.trainables.training_set import DistillationSet

#: Extra metrics of a filled trial: weights re-initialised, and seconds of fine-tuning after filling.
FILLED_WEIGHTS = "filled_weights"
FILL_SECONDS = "fill_seconds"


def live_structure_masks(layer: nn.Module) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """For each prunable linear of ``layer``: (weight positions, bias positions) inside live structure."""
    attention = layer.attention.self
    size = attention.attention_head_size
    head_rows = torch.zeros(attention.query.out_features, dtype=torch.bool, device=attention.query.weight.device)
    for head in live_heads(layer):
        head_rows[head * size:(head + 1) * size] = True
    neurons = torch.zeros(layer.intermediate.dense.out_features, dtype=torch.bool, device=head_rows.device)
    neurons[live_neurons(layer)] = True
    rows = lambda selected, linear: selected[:, None].expand_as(linear.weight)  # noqa: E731
    cols = lambda selected, linear: selected[None, :].expand_as(linear.weight)  # noqa: E731
    return {
        "query": (rows(head_rows, attention.query), head_rows),
        "key": (rows(head_rows, attention.key), head_rows),
        "value": (rows(head_rows, attention.value), head_rows),
        "output": (cols(head_rows, layer.attention.output.dense), None),
        "intermediate": (rows(neurons, layer.intermediate.dense), neurons),
        "ffn_output": (cols(neurons, layer.output.dense), None),
    }


def _linears(layer: nn.Module) -> dict[str, nn.Linear]:
    attention = layer.attention.self
    return {"query": attention.query, "key": attention.key, "value": attention.value,
            "output": layer.attention.output.dense, "intermediate": layer.intermediate.dense,
            "ffn_output": layer.output.dense}


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
    source_layers = bert_layers(source) if source is not None else [None] * len(bert_layers(model))
    for layer, source_layer in zip(bert_layers(model), source_layers):
        masks = live_structure_masks(layer)
        sources = _linears(source_layer) if source_layer is not None else {}
        for name, linear in _linears(layer).items():
            weight_live, bias_live = masks[name]
            holes = weight_live & linear.weight.eq(0)
            if not holes.any():
                continue  # e.g. structured pruning, which leaves no zeros inside live units
            if name in sources and sources[name].weight.shape != linear.weight.shape:
                raise ValueError(f"fill source {name} is {tuple(sources[name].weight.shape)}, the model's "
                                 f"{tuple(linear.weight.shape)}; fill before compaction, from a model of the same shape")
            filled += int(holes.sum())
            linear.weight[holes] = _values(sources.get(name), "weight", holes, init_std, generator)
            if bias_live is not None and name in sources:
                bias_holes = bias_live & linear.bias.eq(0)
                linear.bias[bias_holes] = sources[name].bias.to(linear.bias)[bias_holes]
    return filled


def _values(source: nn.Linear | None, attribute: str, holes: torch.Tensor, std: float,
            generator: torch.Generator | None) -> torch.Tensor:
    if source is not None:
        return getattr(source, attribute).detach().to(holes.device)[holes]
    count = int(holes.sum())
    return (torch.randn(count, generator=generator) * std).to(holes.device)


def distil(model: nn.Module, data: DistillationSet, *, steps: int, batch_size: int, seed: int, learning_rate: float,
           temperature: float, alpha: float, precision: str, device: torch.device) -> tuple[float, float]:
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
        loss_value = _distil_loop(model, data, plan, optimizer, scaler, autocast, steps=steps, temperature=temperature,
                                  alpha=alpha, device=device, description=f"precision {precision}, learning_rate {learning_rate}")
    model.eval()
    return loss_value, time.perf_counter() - started


def _distil_loop(model, data: DistillationSet, plan: BatchPlan, optimizer, scaler, autocast, *, steps: int,
                 temperature: float, alpha: float, device: torch.device, description: str) -> float:
    loss_value = float("nan")
    for step in range(steps):
        indices = plan.indices(step)
        with autocast:
            logits = model(**take(data.inputs, indices, device)).logits
        loss = distillation_loss(logits, data.teacher_logits[indices].to(device), data.labels[indices].to(device),
                                 temperature=temperature, alpha=alpha)
        if not torch.isfinite(loss):
            raise TrialError(f"loss is {loss.item()} at step {step} of the filled fine-tuning ({description})")
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        loss_value = float(loss.item())
    return loss_value
