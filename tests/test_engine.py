"""The engine: validation before any work, typed checkpoints with embedded schemes, tasks
(landmark, distillation), aligned-crop stages, and a package free of import cycles."""

from __future__ import annotations

import ast
import copy
import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

import facemarks
from facemarks import schemes
from facemarks.cli import main as cli_main
from facemarks.data import cache as crop_cache
from facemarks.data import formats
from facemarks.data.formats.table import write_csv
from facemarks.engine import config as cfg
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.evaluate import evaluate_checkpoint
from facemarks.engine.task import DistillationTask
from facemarks.engine.trainer import fit
from facemarks.errors import ConfigError
from facemarks.data.sample import read_image
from facemarks.geometry.affine import apply_to_points, crop_matrix, invert, warp_antialiased
from facemarks.geometry.coords import to_normalized
from facemarks.geometry.crop import AlignCrop, similarity_matrix
from facemarks.data.samplers import ShardedSampler
from facemarks.models import create
from facemarks.registry import SAMPLERS

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('faces'), num_faces=48, seed=5, image_size=96)}"


def small_config(spec: str, cache_dir, **changes) -> cfg.Config:
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, cache_dir=str(cache_dir))
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 1, 8, 1
    for key, value in changes.items():
        setattr(config, key, value)
    return config


# ----------------------------------------------------------------------------- validation


def run_cli(argv, capsys) -> tuple[int, str]:
    code = cli_main(argv)
    return code, capsys.readouterr().err.strip()


def test_train_with_an_unknown_model_prints_one_line_listing_the_models(capsys, tmp_path):
    code, err = run_cli(["train", "--model", "nosuch", "--out", str(tmp_path / "run")], capsys)
    assert code == 2
    assert len(err.splitlines()) == 1, err
    assert "model.name" in err and "'nosuch'" in err
    for name in ("dsnet", "resnet18", "dsnet_heatmap", "hourglass"):
        assert name in err
    assert not (tmp_path / "run").exists()


def test_compare_with_an_invalid_third_entry_fails_before_training(capsys, tmp_path):
    started = time.time()
    code, err = run_cli(["compare", "--losses", "mpd", "wing:w=10,epsilon=2", "wing:w=-1", "--epochs", "50",
                         "--out", str(tmp_path / "out")], capsys)
    assert time.time() - started < 10
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "losses[2] (wing:w=-1)" in err and "'w'" in err and "> 0" in err
    assert not (tmp_path / "out").exists()  # nothing read, nothing trained, nothing written


def test_yaml_entries_as_mappings_and_their_errors(tmp_path):
    def load(entries):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"losses": entries}))
        return cfg.load(path), path

    config, path = load(["mpd", {"model": "dsnet", "loss": "wing", "params": {"w": 10, "epsilon": 2}},
                         {"model": {"name": "dsnet_heatmap", "kwargs": {"width": 16}}, "loss": "awing"}])
    entries = cfg.validate(config, str(path))
    assert [(e.model.name, e.loss, e.params) for e in entries] == [
        ("dsnet", "mpd", {}), ("dsnet", "wing", {"w": 10, "epsilon": 2}), ("dsnet_heatmap", "awing", {})]
    assert entries[2].model.kwargs == {"width": 16}  # an entry's model keeps its kwargs
    with pytest.raises(ConfigError, match=r"c.yaml: losses\[1\] \(dsnet_heatmap\+wing\): .*heatmap model"):
        load(["mpd", {"model": "dsnet_heatmap", "loss": "wing"}])
    with pytest.raises(ConfigError, match=r"losses\[0\] \(dsnet\+wing:v=3\): .*no parameter 'v'; valid: w, epsilon"):
        load([{"loss": "wing", "params": {"v": 3}}])
    with pytest.raises(ConfigError, match=r"losses\[0\] \(nosuch\): unknown loss 'nosuch'; valid: .*awing"):
        load(["nosuch"])


def test_the_config_entry_keeps_the_models_kwargs():
    config = cfg.Config()
    config.model = cfg.ModelConfig(name="dsnet", kwargs={"hidden": 32})
    config.losses = ["wing", "dsnet+huber", "mobilenetv2+l1"]
    entries = cfg.validate(config)
    assert [e.model.kwargs for e in entries] == [{"hidden": 32}, {"hidden": 32}, {}]


@pytest.mark.parametrize("text,key,message", [
    ("epochs: ten", "epochs", "must be int"),
    ("epochs: 0", "epochs", "positive integer"),
    ("batch_size: 2.5", "batch_size", "must be int"),
    ("optim: {lr: -0.1}", "optim.lr", "positive"),
    ("optim: {optimizer: adam}", "optim.optimizer", "valid: adamw, sgd"),
    ("optim: {schedule: linear}", "optim.schedule", "valid: cosine, step"),
    ("data: {sampler: balanced}", "data.sampler", "valid: pose_balanced, uniform"),
    ("crop: {policy: circle}", "crop", "valid: align, box"),
    ("augment: {params: {rotation: -5}}", "augment.params", "rotation"),
    ("task: {name: distill}", "task.teacher", "teacher"),
    ("channels_last: 1", "channels_last", "must be bool"),
])
def test_config_values_are_checked_with_the_key_named(tmp_path, text, key, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        cfg.load(path)
    assert str(caught.value).startswith(f"{path}: {key}: "), str(caught.value)
    assert message in str(caught.value)


def test_yaml_exponent_without_a_dot_is_a_number(tmp_path):
    path = tmp_path / "lr.yaml"
    path.write_text("optim: {lr: 1e-4}\n")  # YAML 1.1 reads this as text
    assert cfg.load(path).optim.lr == pytest.approx(1e-4)


# ----------------------------------------------------------------------------- checkpoints


def custom_scheme_file(tmp_path) -> Path:
    """A 68-point scheme that is not a built-in: 300W's points, only three boundaries."""
    values = schemes.to_dict(schemes.get("300w"))
    values["name"] = "face68"
    values["boundaries"] = {k: values["boundaries"][k] for k in list(values["boundaries"])[:3]}
    path = tmp_path / "face68.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def test_a_checkpoint_trained_on_a_custom_scheme_loads_and_predicts(faces, tmp_path):
    scheme_path = custom_scheme_file(tmp_path)
    samples = [dataclasses.replace(s, scheme=str(scheme_path)) for s in formats.load(faces)]
    csv_path = write_csv(samples, Path(samples[0].image_path).parent / "face68.csv")  # beside its images
    config = small_config(f"csv:{csv_path}", tmp_path / "cache")
    config.model = cfg.ModelConfig("dsnet_heatmap", {"width": 16, "boundary": True})
    config.losses = ["awing"]
    result = fit(config, cfg.validate(config)[0], 0, tmp_path / "run", progress=False)
    checkpoint = Checkpoint.load(result["checkpoint"])
    assert checkpoint.scheme.name == "face68" and len(checkpoint.scheme.boundaries) == 3
    scheme_path.unlink()  # the checkpoint carries the whole scheme, not a reference to the file
    predictor = facemarks.load(result["checkpoint"])
    model = checkpoint.build_model()
    for sample in samples[:3]:
        found = predictor.predict(sample.image_path, boxes=[sample.box])
        assert len(found) == 1 and found[0]["landmarks"].shape == (68, 2)
        # the same model on the same crop, the crop and the way back computed here
        matrix = crop_matrix(sample.box, 32, margin=0.25)
        crop = warp_antialiased(read_image(sample.image_path), matrix, 32)
        with torch.no_grad():
            output = model.decode(model(torch.from_numpy(crop.transpose(2, 0, 1)[None].copy()).float() / 255))
        expected = apply_to_points(invert(matrix), output[0].numpy().astype(np.float64) * 32 - 0.5)
        assert np.abs(found[0]["landmarks"] - expected).max() < 1e-3


def test_first_format_checkpoints_load(tmp_path):
    shipped = Path(facemarks.__file__).parent / "weights" / "dsnet_heatmap_300w.pt"
    checkpoint = Checkpoint.load(shipped)
    assert checkpoint.scheme is schemes.get("300w") and checkpoint.crop.to_dict() == {"policy": "box", "margin": 0.25}
    assert checkpoint.kind == "heatmap" and checkpoint.decoder == "dark"
    checkpoint.save(tmp_path / "again.pt")  # and round-trip through the current format
    again = Checkpoint.load(tmp_path / "again.pt")
    model, rebuilt = checkpoint.build_model(), again.build_model()
    x = torch.rand(2, 3, 128, 128)
    assert torch.equal(model.decode(model(x)), rebuilt.decode(rebuilt(x)))


# ----------------------------------------------------------------------------- samplers


class EveryOther(ShardedSampler):
    """A sampler that visits every other face (a stand-in for a weighted sampler)."""

    orders: list = []

    def epoch_length(self) -> int:
        return (len(self.samples) + 1) // 2

    def epoch_order(self) -> np.ndarray:
        order = np.random.default_rng([self.seed, self.epoch]).permutation(len(self.samples))[::2]
        EveryOther.orders.append(order)
        return order


def test_a_new_sampler_plugs_in_by_name(faces, tmp_path, monkeypatch):
    monkeypatch.setitem(SAMPLERS._entries, "every_other", EveryOther)
    monkeypatch.setitem(SAMPLERS._info, "every_other", {})
    config = small_config(faces, tmp_path / "cache", losses=["wing"], epochs=2)
    config.data.sampler = "every_other"
    cfg.validate(config)
    result = fit(config, "wing", 0, tmp_path / "run", progress=False, record_batches=True)
    num_train = len(formats.load(faces, "train"))
    assert len(result["batch_digests"]) == 2 * (((num_train + 1) // 2) // config.batch_size)
    assert len(EveryOther.orders) == 2 and not np.array_equal(EveryOther.orders[0], EveryOther.orders[1])
    # DDP: the base class shards the sampler's order, cut to a multiple of the ranks
    first, second = (list(EveryOther(list(range(9)), seed=1, rank=r, world_size=2)) for r in range(2))
    order = EveryOther.orders[-1].tolist()
    assert first == order[0:4:2] and second == order[1:4:2]


# ----------------------------------------------------------------------------- crops


def test_similarity_matches_an_independent_least_squares_fit():
    rng = np.random.default_rng(1)
    source = rng.uniform(0, 100, (5, 2))
    target = rng.uniform(0, 50, (5, 2))
    # unknowns a, b, tx, ty of x' = a x - b y + tx, y' = b x + a y + ty
    rows = [[x, -y, 1, 0] for x, y in source] + [[y, x, 0, 1] for x, y in source]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.concatenate([target[:, 0], target[:, 1]]), rcond=None)[0]
    expected = np.array([[a, -b, tx], [b, a, ty]])
    assert np.abs(similarity_matrix(source, target) - expected).max() < 1e-9
    mirrored = source * [-1, 1]  # a reflection is never returned: the linear part keeps det > 0
    assert np.linalg.det(similarity_matrix(mirrored, target)[:, :2]) > 0


def test_aligned_crops_put_the_five_points_on_the_template(faces, tmp_path):
    samples = list(formats.load(faces, "val"))
    policy = AlignCrop()
    crops = crop_cache.build(samples, 48, policy, root=tmp_path)
    for i, sample in enumerate(samples):
        points = to_normalized(apply_to_points(crops.plain_matrix(i, 48), crops.points[i]), 48)
        five = schemes.to_5pt(points, "300w")
        direct = to_normalized(apply_to_points(policy.matrix(48, points=sample.landmarks, scheme=schemes.get("300w")),
                                               schemes.to_5pt(sample.landmarks, "300w")), 48)
        assert np.abs(five - direct).max() < 1e-6  # the cache crop is the policy's crop
    template = np.asarray(policy.template)
    mean_five = np.mean([schemes.to_5pt(to_normalized(apply_to_points(crops.plain_matrix(i, 48), crops.points[i]), 48),
                                        "300w") for i in range(len(samples))], axis=0)
    assert np.abs(mean_five - template).max() < 0.03


def test_an_aligned_stage_trains_and_evaluates_on_a_first_stages_points(faces, tmp_path):
    stage1 = small_config(faces, tmp_path / "cache", losses=["wing"])
    first = fit(stage1, "wing", 0, tmp_path / "stage1", progress=False)
    stage2 = small_config(faces, tmp_path / "cache", losses=["wing"])
    stage2.crop = cfg.CropConfig(policy="align")
    second = fit(stage2, "wing", 0, tmp_path / "stage2", progress=False)
    assert Checkpoint.load(second["checkpoint"]).crop == AlignCrop()
    assert np.isfinite(second["history"][0]["val_nme"])
    cascade = evaluate_checkpoint(second["checkpoint"], faces, "test", cache_dir=tmp_path / "cache",
                                  first_stage=first["checkpoint"])
    oracle = evaluate_checkpoint(second["checkpoint"], faces, "test", cache_dir=tmp_path / "cache")
    assert cascade["crop_reference"].startswith("first stage") and oracle["crop_reference"].startswith("ground truth")
    # different crops (from predicted vs true points) give different errors
    assert cascade["per_face"]["inter_ocular"] != oracle["per_face"]["inter_ocular"]


# ----------------------------------------------------------------------------- distillation


def test_distillation_terms_vanish_for_a_copy_of_the_teacher():
    teacher = create("dsnet_heatmap", 68, input_size=32, width=16).eval()
    student = copy.deepcopy(teacher)
    from facemarks.losses import build_loss

    pairs = [(name, name) for name in student.feature_layers]
    task = DistillationTask(student, build_loss("awing", 32), teacher, pairs,
                            {"landmarks": 1.0, "kd_output": 1.0, "kd_features": 1.0}).eval()
    for adapter in task.adapters:  # identity adapters: the student's features are the teacher's
        torch.nn.init.eye_(adapter.weight.view(adapter.weight.shape[0], -1))
    terms = task(torch.rand(2, 3, 32, 32), torch.rand(2, 68, 2))
    assert terms["kd_output"].item() == 0 and terms["kd_features"].item() == 0
    assert terms["landmarks"].item() > 0
    assert torch.isclose(terms["loss"], terms["landmarks"])


def test_a_distillation_task_trains_a_student_from_a_teacher(faces, tmp_path):
    teacher_config = small_config(faces, tmp_path / "cache", losses=["dsnet_heatmap+awing"])
    teacher_config.model = cfg.ModelConfig("dsnet_heatmap", {"width": 32})
    teacher = fit(teacher_config, "dsnet_heatmap+awing", 0, tmp_path / "teacher", progress=False)

    def student(out, **weights):
        config = small_config(faces, tmp_path / "cache", losses=["awing"])
        config.model = cfg.ModelConfig("dsnet_heatmap", {"width": 8})
        config.task = cfg.TaskConfig(name="distill", teacher=teacher["checkpoint"], **weights)
        cfg.validate(config)
        return fit(config, "awing", 0, tmp_path / out, progress=False)

    distilled = student("kd")
    history = distilled["history"][0]
    assert history["train_kd_output"] > 0 and history["train_kd_features"] > 0
    last = Checkpoint.load(Path(distilled["out_dir"]) / "last.pt")
    assert last.task_state["adapters"] and last.model.kwargs == {"width": 8}
    assert last.build_model().head.heatmaps.in_channels == 8  # the student alone is kept
    # without the teacher's terms the task is the plain landmark task: the same weights
    plain_config = small_config(faces, tmp_path / "cache", losses=["awing"])
    plain_config.model = cfg.ModelConfig("dsnet_heatmap", {"width": 8})
    plain = Checkpoint.load(fit(plain_config, "awing", 0, tmp_path / "plain", progress=False)["out_dir"] + "/last.pt")
    muted = Checkpoint.load(student("muted", output_weight=0.0, feature_weight=0.0)["out_dir"] + "/last.pt")
    assert all(torch.equal(plain.state_dict[k], muted.state_dict[k]) for k in plain.state_dict)
    assert any(not torch.equal(plain.state_dict[k], last.state_dict[k]) for k in plain.state_dict
               if plain.state_dict[k].is_floating_point())


# ----------------------------------------------------------------------------- structure


def package_modules() -> list[str]:
    root = REPO / "facemarks"
    names = []
    for path in sorted(root.rglob("*.py")):
        if path.name == "__main__.py":  # runs the command line when imported
            continue
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def imported_modules(path: Path, module: str, known: set[str]) -> set[str]:
    """facemarks modules imported anywhere in a file (also inside functions)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + [base]).strip(".")
            names = [base] + [f"{base}.{a.name}" for a in node.names]
        for name in names:
            while name and name not in known:
                name = name.rpartition(".")[0]
            if name and name != module and not module.startswith(name + "."):
                found.add(name)
    return found


def test_no_import_cycles():
    modules = package_modules()
    known = set(modules)
    graph = {m: imported_modules(REPO / (m.replace(".", "/") + ("/__init__.py" if (REPO / m.replace(".", "/")).is_dir()
                                                                else ".py")), m, known) for m in modules}

    def reaches(start, goal, seen):
        for nxt in graph[start]:
            if nxt == goal or (nxt not in seen and not seen.add(nxt) and reaches(nxt, goal, seen)):
                return True
        return False

    cycles = [m for m in modules if reaches(m, m, set())]
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_every_module_imports_on_its_own():
    script = ("import importlib, sys\n"
              "for name in sys.argv[1:]:\n"
              "    for loaded in [m for m in sys.modules if m == 'facemarks' or m.startswith('facemarks.')]:\n"
              "        del sys.modules[loaded]\n"
              "    importlib.import_module(name)\n")
    done = subprocess.run([sys.executable, "-c", script, *package_modules()], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
