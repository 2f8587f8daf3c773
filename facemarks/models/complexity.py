"""Model size and multiply-add count, measured by running one dummy image.

Conventions: MACs are multiply-accumulates of one image of `input_size` x `input_size`
counted for Conv2d (grouped and depthwise included), ConvTranspose2d and Linear layers;
biases, normalisation, activations, pooling and additions are not counted (they are a
small fraction and the published figures, e.g. ResNet-18's 1.8 G at 224 px, leave them
out too). size_bytes is the float32 size of the parameters; BN running statistics are
left out since export folds them into the convolutions.
"""

from __future__ import annotations

import torch
from torch import nn


def _conv_macs(module: nn.Conv2d, inputs, output: torch.Tensor) -> int:
    # Each output element sums over Cin/groups input channels times the kernel area.
    kh, kw = module.kernel_size
    per_output = (module.in_channels // module.groups) * kh * kw
    return output.numel() * per_output


def _conv_transpose_macs(module: nn.ConvTranspose2d, inputs, output: torch.Tensor) -> int:
    # Each input element is scattered to Cout/groups channels times the kernel area.
    kh, kw = module.kernel_size
    per_input = (module.out_channels // module.groups) * kh * kw
    return inputs[0].numel() * per_input


def _linear_macs(module: nn.Linear, inputs, output: torch.Tensor) -> int:
    return output.numel() * module.in_features


_COUNTERS = ((nn.Conv2d, _conv_macs), (nn.ConvTranspose2d, _conv_transpose_macs), (nn.Linear, _linear_macs))


def _counter(module: nn.Module):
    """The MAC counter of `module` (subclasses included, e.g. a Linear output layer), or None."""
    return next((count for kind, count in _COUNTERS if isinstance(module, kind)), None)


def complexity(model: nn.Module, input_size: int) -> dict[str, int]:
    """{"params": int, "size_bytes": int, "macs": int} of `model` for one RGB image.

    The model is run once in eval mode on a (1, 3, input_size, input_size) tensor of 0.5
    (its training/eval state is restored afterwards); inputs are on the model's device.
    """
    params = sum(p.numel() for p in model.parameters())
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += _counter(module)(module, inputs, output)

    handles = [m.register_forward_hook(hook) for m in model.modules() if _counter(m) is not None]
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.full((1, 3, input_size, input_size), 0.5, device=device, dtype=dtype))
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    return {"params": params, "size_bytes": params * 4, "macs": int(total)}
