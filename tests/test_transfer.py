"""Transfer between schemes (facemarks.engine.transfer): the copy rule, first-n layers,
freezing (weights and BatchNorm statistics), refusals, and a fine-tuning run that resumes."""

from __future__ import annotations

import pytest
import torch
import yaml

from facemarks import losses, models, schemes
from facemarks.engine import config as cfg
from facemarks.engine import transfer
from facemarks.engine import trainer as train
from facemarks.engine.checkpoint import Checkpoint, ModelSpec
from facemarks.errors import CheckpointError, ConfigError
from facemarks.geometry.crop import BoxCrop

SIZE = 32


def dsnet_heatmap(num_points: int, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return models.create("dsnet_heatmap", num_points, scheme=schemes.for_num_points(num_points), input_size=SIZE,
                         width=8)


def saved_source(tmp_path, name: str = "dsnet_heatmap", num_points: int = 68) -> tuple[str, dict]:
    """A checkpoint whose every tensor differs from a fresh model's (random values, BN statistics too)."""
    torch.manual_seed(123)
    if name == "dsnet_heatmap":
        model = dsnet_heatmap(num_points, seed=7)
    else:
        model = models.create(name, num_points, input_size=SIZE)
    state = {k: (torch.randn_like(v) if v.is_floating_point() else v + 5) for k, v in model.state_dict().items()}
    path = tmp_path / f"{name}_{num_points}.pt"
    Checkpoint(ModelSpec(name, {"width": 8} if name == "dsnet_heatmap" else {}), schemes.for_num_points(num_points),
               BoxCrop(0.25), SIZE, state, model.kind).save(path)
    return str(path), state


def test_matching_tensors_are_copied_exactly_and_the_new_head_keeps_its_own_init(tmp_path):
    path, source = saved_source(tmp_path)
    fresh = dsnet_heatmap(98, seed=0).state_dict()
    model = dsnet_heatmap(98, seed=0)
    report = transfer.initialise(model, cfg.ModelConfig("dsnet_heatmap", init=path))
    after = model.state_dict()
    head = {"head.heatmaps.weight", "head.heatmaps.bias"}
    assert {name for name, _ in report.skipped} == head  # 68 vs 98 output channels
    assert all("(68, 8, 1, 1)" in reason or "(68,)" in reason for _, reason in report.skipped)
    for name, value in after.items():
        expected = fresh[name] if name in head else source[name]
        assert torch.equal(value, expected), name
    assert set(report.copied) == set(after) - head


def test_init_layers_copies_only_the_first_n_layers(tmp_path):
    path, source = saved_source(tmp_path)
    fresh = dsnet_heatmap(68, seed=0).state_dict()
    model = dsnet_heatmap(68, seed=0)
    transfer.initialise(model, cfg.ModelConfig("dsnet_heatmap", init=path, init_layers=2))
    # layer 1 = stem, layer 2 = stages.0.0 (feature_layers order); everything else, the
    # deeper stages, laterals and head (same shapes here), keeps the fresh init
    for name, value in model.state_dict().items():
        copied = name.startswith(("stem.", "stages.0.0."))
        assert torch.equal(value, source[name] if copied else fresh[name]), name


def test_frozen_layers_and_their_batchnorm_statistics_stay_put(tmp_path):
    path, _ = saved_source(tmp_path)
    model = dsnet_heatmap(68, seed=0)
    transfer.initialise(model, cfg.ModelConfig("dsnet_heatmap", init=path, freeze=3))  # stem, stages.0.0, stages.1.0
    before = {k: v.clone() for k, v in model.state_dict().items()}
    criterion = losses.build_loss("heatmap_mse", SIZE)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.1)
    torch.manual_seed(0)
    for _ in range(3):
        model.train()  # what every training epoch does
        images, points = torch.rand(4, 3, SIZE, SIZE), torch.rand(4, 68, 2) * 0.6 + 0.2
        output = model(images)
        loss = criterion(output, criterion.targets(points, output))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    frozen = ("stem.", "stages.0.0.", "stages.1.0.")
    for name, value in model.state_dict().items():
        if name.startswith(frozen):
            assert torch.equal(value, before[name]), f"{name} moved although frozen"
        elif value.is_floating_point():
            assert not torch.equal(value, before[name]), f"{name} did not train"
    assert not any(p.requires_grad for n, p in model.named_parameters() if n.startswith(frozen))


def test_another_model_family_is_refused_naming_the_file(tmp_path):
    path, _ = saved_source(tmp_path, name="dsnet")
    with pytest.raises(CheckpointError) as error:
        transfer.initialise(dsnet_heatmap(98, seed=0), cfg.ModelConfig("dsnet_heatmap", init=path))
    message = str(error.value)
    assert path in message and "'dsnet'" in message and "\n" not in message


def test_too_many_layers_and_bad_keys_are_refused(tmp_path):
    path, _ = saved_source(tmp_path)
    with pytest.raises(ConfigError, match=r"model\.freeze.*1\.\.9"):
        transfer.initialise(dsnet_heatmap(68, seed=0), cfg.ModelConfig("dsnet_heatmap", init=path, freeze=10))

    # what compare checks for every entry before the first one trains
    wflw = schemes.get("wflw")
    with pytest.raises(ConfigError, match=r"losses\[1\]\.model\.freeze"):
        transfer.check(cfg.ModelConfig("dsnet_heatmap", {"width": 8}, init=path, freeze=10), wflw, SIZE, "losses[1].model")
    with pytest.raises(CheckpointError, match="'dsnet_heatmap' model and this run trains 'hourglass'"):
        transfer.check(cfg.ModelConfig("hourglass", init=path), wflw, 64)

    def entry_error(model: dict) -> str:
        config = cfg.Config(losses=[{"model": {"name": "dsnet_heatmap", **model}, "loss": "awing"}])
        with pytest.raises(ConfigError) as error:
            cfg.validate(config, "c.yaml")
        return str(error.value)

    assert "model.init" in entry_error({"init": str(tmp_path / "missing.pt")})
    assert "model.freeze" in entry_error({"freeze": 2})  # freezing random weights
    assert "model.init_layers" in entry_error({"init_layers": 2})
    assert "model.init_layers" in entry_error({"init": path, "init_layers": 0})


def test_an_entry_without_init_is_written_as_before(tmp_path):
    path, _ = saved_source(tmp_path)
    plain = cfg.parse_entry("awing", cfg.Config(), "c", "losses[0]")
    assert set(plain.to_dict()["model"]) == {"name", "kwargs", "pretrained"}  # old last.pt files still resume
    config = cfg.Config(losses=[{"name": "ft", "model": {"name": "dsnet_heatmap", "init": path, "freeze": 2},
                                 "loss": "awing"}])
    entry = cfg.validate(config, "c.yaml")[0]
    assert entry.to_dict()["model"]["init"] == path and entry.to_dict()["model"]["freeze"] == 2


@pytest.fixture(scope="module")
def tiny_faces(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('synthetic'), num_faces=40, seed=3, image_size=96)}"


class Interrupted(Exception):
    pass


def test_a_fine_tuning_run_records_its_init_and_resumes_exactly(tiny_faces, tmp_path):
    config = cfg.Config(data=cfg.DataConfig(spec=tiny_faces, cache_dir=str(tmp_path / "cache")),
                        model=cfg.ModelConfig("dsnet_heatmap", {"width": 8}), input_size=SIZE, epochs=1,
                        batch_size=8, threads=1, losses=["heatmap_mse"])
    source = train.fit(config, "heatmap_mse", 0, tmp_path / "source", progress=False)["checkpoint"]
    config.model.init, config.model.freeze, config.epochs = source, 2, 2
    cfg.validate(config, "test")
    train.fit(config, "heatmap_mse", 1, tmp_path / "straight", progress=False)

    def crash(history):
        raise Interrupted

    with pytest.raises(Interrupted):
        train.fit(config, "heatmap_mse", 1, tmp_path / "resumed", progress=False, on_epoch_end=crash)
    train.fit(config, "heatmap_mse", 1, tmp_path / "resumed", resume=True, progress=False)
    saved = yaml.safe_load((tmp_path / "resumed" / "config.yaml").read_text())
    assert saved["model"]["init"] == source and saved["model"]["freeze"] == 2
    initial = Checkpoint.load(source).state_dict
    straight = Checkpoint.load(tmp_path / "straight" / "last.pt").state_dict
    resumed = Checkpoint.load(tmp_path / "resumed" / "last.pt").state_dict
    for name, value in straight.items():
        assert torch.equal(value, resumed[name]), name
        if name.startswith(("stem.", "stages.0.0.")):  # the two frozen layers: exactly the source's
            assert torch.equal(value, initial[name]), name


def test_the_wflw_transfer_split_is_fixed_disjoint_complete_and_stratified(data_wflw):
    from facemarks.data import formats
    from facemarks.data.formats.wflw import ATTRIBUTES, transfer_split

    spec = f"wflw:{data_wflw}"
    test = formats.load(spec, "test")
    finetune, holdout = formats.load(spec, "finetune"), formats.load(spec, "holdout")
    assert (len(test), len(finetune), len(holdout)) == (577, 400, 177)
    names = lambda faces: {s.image_path for s in faces}  # noqa: E731
    assert not names(finetune) & names(holdout) and names(finetune) | names(holdout) == names(test)
    for attribute in ATTRIBUTES:
        flagged = sum(s.attributes[attribute] for s in test)
        share = sum(s.attributes[attribute] for s in finetune)
        assert abs(share - flagged * 400 / 577) <= 2, (attribute, share, flagged)
    # independent of the file's line order
    assert names(transfer_split(list(reversed(test)))["finetune"]) == names(finetune)
    counts = formats.splits(spec)
    assert (counts["finetune"], counts["holdout"]) == (400, 177)
