"""Transfer: start a model from another run's checkpoint, possibly of another scheme.

`model.init: FILE` (`facemarks train --init FILE`, or an entry's `model: {init: FILE}`)
starts the new model from a facemarks checkpoint of the same model family (the same
registered model name; another family is refused, naming the file). A scheme change
(300W 68 -> WFLW 98 points) is expected:

* Copy rule: every tensor of the new model's state_dict (parameters and buffers, BatchNorm
  statistics included) whose name and shape match a tensor of the checkpoint is copied
  exactly; every other one keeps the new model's own initialisation (seeded like any run):
  for 68 -> 98 points that is the output layer (heatmaps or points) and the boundary maps.
  Each skipped tensor is reported with its reason; a checkpoint matching nothing is refused.
* Layers: "layer k" is the k-th entry of the model's `feature_layers` (its blocks, shallow
  to deep, e.g. dsnet_heatmap: stem, stages.0.0, stages.1.0, stages.1.1, stages.2.0,
  stages.2.1, stages.3.0, stages.3.1, smooth), and a tensor belongs to it when its name
  starts with that module's name. Tensors outside every block (dsnet_heatmap's laterals,
  the head) belong to no layer.
  `model.init_layers: n` copies only the matching tensors of layers 1..n.
* `model.freeze: n` freezes layers 1..n: their parameters stop training (requires_grad
  False, so the optimizer never updates them, weight decay included) and their BatchNorm
  modules run in eval mode in every forward pass (a pre-forward hook), so their running
  statistics do not move either. Everything else trains.

The run's config.yaml records `model.init`; `--resume` rebuilds the same model (copy and
freeze again) and then loads last.pt over it, so a resumed run continues exactly.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field

from torch import nn

from facemarks.engine.checkpoint import Checkpoint
from facemarks.errors import CheckpointError, ConfigError


@dataclass
class TransferReport:
    """What `copy_matching` did: the tensors copied and those skipped, each with the reason."""

    source: str
    copied: list = field(default_factory=list)
    skipped: list = field(default_factory=list)    # (name, reason)
    unused: list = field(default_factory=list)     # checkpoint tensors with no counterpart
    frozen: tuple = ()                             # the frozen layers' module names

    def text(self) -> str:
        lines = [f"init from {self.source}: copied {len(self.copied)} tensors, skipped {len(self.skipped)}, "
                 f"{len(self.unused)} of the checkpoint unused"]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        if self.frozen:
            lines.append(f"  frozen layers: {', '.join(self.frozen)}")
        return "\n".join(lines)


def layers(model: nn.Module, count: int | None, key: str) -> tuple[str, ...]:
    """The module names of the first `count` layers of `model` (every layer for None);
    ConfigError naming `key` when the model has fewer."""
    names = tuple(getattr(model, "feature_layers", ()) or ())
    if count is None:
        return names
    if not 1 <= count <= len(names):
        raise ConfigError("config", key, f"must be in 1..{len(names)}: the model has {len(names)} layers "
                                         f"({', '.join(names) or 'none'})")
    return names[:count]


def layer_of(name: str, layer_names) -> str | None:
    """The layer (module name) a state_dict entry `name` belongs to, or None."""
    return next((layer for layer in layer_names if name.startswith(layer + ".")), None)


def load_init(path, model_name: str) -> Checkpoint:
    """The checkpoint to start from; CheckpointError naming the file for another model family."""
    checkpoint = Checkpoint.load(path)
    if checkpoint.model.name != model_name:
        raise CheckpointError(path, f"is a {checkpoint.model.name!r} model and this run trains {model_name!r}: "
                                    f"model.init needs a checkpoint of the same model family")
    return checkpoint


def copy_matching(model: nn.Module, state_dict: dict, only_layers: tuple[str, ...] | None = None,
                  source: str = "<memory>") -> TransferReport:
    """Copy into `model` every tensor of `state_dict` that matches by name and shape (only
    those of `only_layers` when given); see the module docstring."""
    report = TransferReport(source)
    own = model.state_dict()
    new = {}
    for name, tensor in own.items():
        if only_layers is not None and layer_of(name, only_layers) is None:
            report.skipped.append((name, f"outside the first {len(only_layers)} layers"))
        elif name not in state_dict:
            report.skipped.append((name, "not in the checkpoint"))
        elif tuple(state_dict[name].shape) != tuple(tensor.shape):
            report.skipped.append((name, f"shape {tuple(state_dict[name].shape)} in the checkpoint, "
                                         f"{tuple(tensor.shape)} here"))
        else:
            new[name] = state_dict[name].to(tensor.dtype)
            report.copied.append(name)
    report.unused = [name for name in state_dict if name not in own]
    if not new:
        raise CheckpointError(source, "has no tensor of this model's names and shapes to start from")
    model.load_state_dict({**own, **new})
    return report


def _keep_eval(module: nn.Module, args) -> None:
    # A frozen BatchNorm normalises with its stored statistics and never updates them,
    # whatever mode the training loop sets.
    module.training = False


def freeze(model: nn.Module, layer_names: tuple[str, ...]) -> None:
    """Freeze the layers `layer_names` of `model` (see the module docstring)."""
    for layer in layer_names:
        module = model.get_submodule(layer)
        module.requires_grad_(False)
        for sub in module.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                sub.register_forward_pre_hook(_keep_eval)
                sub.eval()


def initialise(model: nn.Module, model_config, key: str = "model", verbose: bool = True) -> TransferReport | None:
    """Apply `model_config`'s init / init_layers / freeze to a freshly built `model`; returns
    the report (None without init), printed to stderr when `verbose`. `key`: the config key
    for messages."""
    report = None
    if model_config.init:
        checkpoint = load_init(model_config.init, model_config.name)
        chosen = layers(model, model_config.init_layers, f"{key}.init_layers") if model_config.init_layers else None
        report = copy_matching(model, checkpoint.state_dict, chosen, str(model_config.init))
    if model_config.freeze:
        frozen = layers(model, model_config.freeze, f"{key}.freeze")
        freeze(model, frozen)
        if report is not None:
            report.frozen = frozen
    if report is not None and verbose:
        print(report.text(), file=sys.stderr)
    return report


def check(model_config, scheme, input_size: int, key: str = "model") -> None:
    """Everything `initialise` would refuse (another model family, a checkpoint matching
    nothing, more layers than the model has), on a model built for the check only: what
    compare runs for every entry before the first one trains."""
    if not (model_config.init or model_config.freeze):
        return
    if model_config.init:
        load_init(model_config.init, model_config.name)  # another family: refused before building anything
    from facemarks import models

    model = models.create(model_config.name, scheme.num_points, scheme=scheme, input_size=input_size,
                          **model_config.kwargs)
    initialise(model, model_config, key, verbose=False)

