"""Training tasks: what is optimised, separate from the loop that optimises it.

A task owns the networks and the objective. `forward(images, points)` runs them on a batch,
builds the targets, and returns the named loss terms and their weighted sum under "loss";
the trainer logs every term. `model` is the network the checkpoint keeps; `extra_state()`
is whatever else trains (e.g. a distillation task's adapters), kept for --resume.

* `LandmarkTask` (task "landmark"): the model and its loss on the annotated points;
  with `add_region_attention` (entry option `region_attention: true`) the point loss of each
  face region is weighted by learned per-face weights (facemarks.losses.regions.RegionAttention),
  logged per epoch as train_region_weight_<region>. A model with region fusion
  (facemarks.models.fusion) adds the losses of its global and local branches to the fused
  points' loss (train_global, train_local), and logs its mean gates (train_gate_<region>).
* `DistillationTask` (task "distill"): a student (the model) learns from the annotations
  and from a frozen teacher checkpoint: an MSE between their outputs (heatmaps when both
  are heatmap models, else points in input pixels) and between feature maps of matched
  blocks ("supervise the feature map output by every block of the student, and also let
  the student learn from the training data; MSE is the distillation loss"). A 1x1
  convolution per pair maps the student's channels to the teacher's; the student's map is
  resized to the teacher's resolution.

A second stage of a cascade is a landmark task trained on aligned crops (config
`crop: {policy: align}`): the crop policy, not the task, decides what the network sees.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from facemarks.engine.checkpoint import Checkpoint
from facemarks.errors import ConfigError
from facemarks.losses.regions import RegionAttention
from facemarks.models.fusion import FUSION_AUX_WEIGHT, RegionFusionHead
from facemarks.registry import TASKS


class LandmarkTask(nn.Module):
    def __init__(self, model: nn.Module, criterion: nn.Module):
        super().__init__()
        self.model = model
        self.criterion = criterion
        self.attention: RegionAttention | None = None  # set by add_region_attention
        self.backbone_tap: FeatureTap | None = None

    def landmark_loss(self, output, points: torch.Tensor) -> torch.Tensor:
        return self.criterion(output, self.criterion.targets(points, output))

    def forward(self, images: torch.Tensor, points: torch.Tensor) -> dict:
        output = self.model(images)
        if self.attention is not None:
            return self._attention_terms(output, points)
        loss = self.landmark_loss(output, points)
        if isinstance(getattr(self.model, "head", None), RegionFusionHead):
            return self._fusion_terms(loss, points)
        return {"loss": loss, "landmarks": loss.detach()}

    def _fusion_terms(self, fused_loss: torch.Tensor, points: torch.Tensor) -> dict:
        """The fused loss plus each branch's own (so both learn whatever the gates pick), and
        each region's mean gate, to be logged."""
        head = self.model.head
        (global_points, local_points), gates = head.take_branches()
        gates = gates.detach().mean(dim=0)
        global_loss, local_loss = self.landmark_loss(global_points, points), self.landmark_loss(local_points, points)
        loss = fused_loss + FUSION_AUX_WEIGHT * (global_loss + local_loss)
        return {"loss": loss, "landmarks": fused_loss.detach(), "global": global_loss.detach(),
                "local": local_loss.detach(), **{f"gate_{name}": gates[r] for r, name in enumerate(head.names)}}

    def _attention_terms(self, output: torch.Tensor, points: torch.Tensor) -> dict:
        """The region-attention loss and each region's weight (the batch mean), to be logged."""
        pooled = self.backbone_tap.outputs["backbone"].float().mean(dim=(2, 3))
        weights = self.attention(pooled)
        point_losses = self.criterion.point_losses(output.float(), self.criterion.targets(points, output).float())
        loss = self.attention.loss(point_losses, weights)
        mean = weights.detach().mean(dim=0)
        return {"loss": loss, "landmarks": loss.detach(),
                **{f"region_weight_{name}": mean[r] for r, name in enumerate(self.attention.names)}}

    def extra_state(self) -> dict | None:
        return None if self.attention is None else {"region_attention": self.attention.state_dict()}

    def load_extra_state(self, state: dict | None) -> None:
        if self.attention is not None:
            self.attention.load_state_dict(state["region_attention"])  # a KeyError/TypeError: not this run's


@TASKS.register("landmark")
def landmark_task(config, model, criterion, device) -> LandmarkTask:
    return LandmarkTask(model, criterion)


def add_region_attention(task: nn.Module, scheme, point_weights=None) -> LandmarkTask:
    """Give a landmark task learned region weights (`region_attention: true`,
    facemarks.losses.regions.RegionAttention) on the pooled output of its model's backbone.
    The attention is part of the task: trained with the model, saved in last.pt's task state
    (for --resume), not in the model (inference does not need it)."""
    model = task.model
    if type(task) is not LandmarkTask:
        raise ConfigError("config", "task.name", "region_attention trains with task 'landmark' only")
    if getattr(model, "kind", None) != "regression" or not hasattr(model, "backbone") \
            or not hasattr(task.criterion, "point_losses"):
        raise ConfigError("config", "region_attention", "needs a regression model (with a backbone) and a point loss")
    if isinstance(model.head, RegionFusionHead):
        raise ConfigError("config", "region_attention", "and region_fusion together are not supported; pick one")
    tap = FeatureTap(model, ["backbone"])
    was_training = model.training
    with torch.no_grad():  # the channel count, from one pass on a blank image
        model.eval()(torch.zeros(1, 3, model.input_size, model.input_size, device=_device(model)))
    model.train(was_training)
    try:
        task.attention = RegionAttention(tap.outputs["backbone"].shape[1], scheme, point_weights).to(_device(model))
    except ValueError as exc:
        raise ConfigError("config", "region_attention", str(exc)) from None
    task.backbone_tap = tap
    return task


class FeatureTap:
    """Keeps the outputs of named submodules of a model during its forward passes."""

    def __init__(self, model: nn.Module, names):
        self.outputs: dict[str, torch.Tensor] = {}
        for name in names:
            model.get_submodule(name).register_forward_hook(self._keeper(name))

    def _keeper(self, name):
        def keep(module, inputs, output):
            self.outputs[name] = output
        return keep


class DistillationTask(LandmarkTask):
    def __init__(self, student: nn.Module, criterion: nn.Module, teacher: nn.Module, pairs, weights: dict):
        super().__init__(student, criterion)
        self.teacher = teacher.eval().requires_grad_(False)
        self.pairs = [tuple(p) for p in pairs]
        self.weights = dict(weights)
        self.student_tap = FeatureTap(student, [s for s, _ in self.pairs])
        self.teacher_tap = FeatureTap(self.teacher, [t for _, t in self.pairs])
        self.adapters = nn.ModuleList(nn.Conv2d(cs, ct, kernel_size=1, bias=False)
                                      for cs, ct in self._channels(student.input_size))

    def _channels(self, input_size: int) -> list[tuple[int, int]]:
        """Channel counts of each feature pair, from one forward pass on a blank batch."""
        was_training = self.model.training
        with torch.no_grad():
            self.model.eval()(torch.zeros(1, 3, input_size, input_size, device=_device(self.model)))
            self._teacher_output(torch.zeros(1, 3, input_size, input_size, device=_device(self.model)))
        self.model.train(was_training)
        channels = []
        for s, t in self.pairs:
            a, b = self.student_tap.outputs[s], self.teacher_tap.outputs[t]
            if a.dim() != 4 or b.dim() != 4:
                raise ConfigError("task", "task.features", f"{s} / {t} are not feature maps (B, C, H, W)")
            channels.append((a.shape[1], b.shape[1]))
        return channels

    def train(self, mode: bool = True):
        super().train(mode)
        self.teacher.eval()  # frozen: batch-norm statistics stay the teacher's
        return self

    def _teacher_output(self, images: torch.Tensor):
        size = self.teacher.input_size
        if images.shape[-1] != size:
            images = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False, antialias=True)
        return self.teacher(images)

    def forward(self, images: torch.Tensor, points: torch.Tensor) -> dict:
        output = self.model(images)
        with torch.no_grad():
            teacher_output = self._teacher_output(images)
        terms = {"landmarks": self.landmark_loss(output, points),
                 "kd_output": self._output_term(output, teacher_output),
                 "kd_features": self._feature_term()}
        loss = sum(self.weights[name] * value for name, value in terms.items())
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}

    def _output_term(self, output, teacher_output) -> torch.Tensor:
        if self.model.kind == "heatmap" and self.teacher.kind == "heatmap":
            student, teacher = output["heatmaps"][-1], teacher_output["heatmaps"][-1]
            if student.shape[-2:] != teacher.shape[-2:]:
                student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
            return F.mse_loss(student.float(), teacher.float())
        # points in pixels of the student's input, like the point losses
        student, teacher = self.model.decode(output), self.teacher.decode(teacher_output)
        return F.mse_loss(student * self.model.input_size, teacher.detach() * self.model.input_size)

    def _feature_term(self) -> torch.Tensor:
        total = torch.zeros((), device=_device(self.model))
        for adapter, (s, t) in zip(self.adapters, self.pairs):
            student, teacher = adapter(self.student_tap.outputs[s]), self.teacher_tap.outputs[t]
            if student.shape[-2:] != teacher.shape[-2:]:
                student = F.interpolate(student, size=teacher.shape[-2:], mode="bilinear", align_corners=False)
            total = total + F.mse_loss(student.float(), teacher.detach().float())
        return total / max(1, len(self.pairs))

    def extra_state(self) -> dict:
        return {"adapters": self.adapters.state_dict()}

    def load_extra_state(self, state: dict | None) -> None:
        if state:
            self.adapters.load_state_dict(state["adapters"])


def matched_layers(student_layers, teacher_layers) -> list[tuple[str, str]]:
    """Every student block paired with the teacher block at the same relative depth."""
    student_layers, teacher_layers = list(student_layers), list(teacher_layers)
    if not student_layers or not teacher_layers:
        return []
    last_s, last_t = max(1, len(student_layers) - 1), len(teacher_layers) - 1
    return [(name, teacher_layers[round(i * last_t / last_s)]) for i, name in enumerate(student_layers)]


@TASKS.register("distill")
def distillation_task(config, model, criterion, device) -> DistillationTask:
    from facemarks.engine.config import crop_policy_of

    teacher_file = Checkpoint.load(config.task.teacher)
    if teacher_file.crop != crop_policy_of(config):
        raise ConfigError(config.task.teacher, "task.teacher", f"the teacher was trained on {teacher_file.crop} "
                                                               f"crops, the student on {crop_policy_of(config)}")
    if teacher_file.scheme.num_points != model.num_points:
        raise ConfigError(config.task.teacher, "task.teacher", f"the teacher predicts {teacher_file.scheme.num_points} "
                                                               f"points, the student {model.num_points}")
    if model.kind == "heatmap" and teacher_file.kind != "heatmap":
        raise ConfigError(config.task.teacher, "task.teacher", "a heatmap student needs a heatmap teacher")
    teacher = teacher_file.build_model(device)
    pairs = config.task.features or matched_layers(model.feature_layers, teacher.feature_layers)
    weights = {"landmarks": config.task.data_weight, "kd_output": config.task.output_weight,
               "kd_features": config.task.feature_weight}
    return DistillationTask(model, criterion, teacher, pairs, weights).to(device)


def _device(module: nn.Module) -> torch.device:
    return next(module.parameters()).device
