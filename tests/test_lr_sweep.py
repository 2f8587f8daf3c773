"""`compare --tune-lr` (facemarks.experiments.lr_sweep): the sweep's choice, its scoring on the
validation split, identical batches, the reuse rule, resume, config validation; and
mixed-precision training (config `precision`) on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from facemarks.cli import main as cli_main
from facemarks.data.splits import load_splits
from facemarks.engine import config as cfg
from facemarks.engine import trainer
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.evaluate import face_errors, predict_crops
from facemarks.errors import ConfigError
from facemarks.experiments import compare as compare_module
from facemarks.experiments import lr_sweep
from facemarks.experiments.compare import compare
from facemarks.models.heads import PointsOutput
from facemarks import schemes


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('faces'), num_faces=60, seed=3, image_size=128)}"


def tiny_config(spec: str, cache_dir, epochs: int = 4, **tune) -> cfg.Config:
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, train_split="train", val_split="val", test_split="test",
                                 cache_dir=str(cache_dir))
    config.model = cfg.ModelConfig(name="dsnet")
    config.input_size, config.epochs, config.batch_size, config.threads = 32, epochs, 8, 1
    config.optim.warmup_epochs = 0.5
    config.losses = ["mpd", "l1"]
    config.tune_lr = cfg.TuneLrConfig(enabled=True, **({"factors": [0.5, 1.0], "epochs_fraction": 0.5} | tune))
    return config


# ----------------------------------------------------------------------------- without training

SHARED = 0.004
# Validation NME of each (entry, factor of the shared rate); None: the run diverges (NaN loss).
# mpd is best at the shared rate (its tuned runs are reused), l1 at twice it, huber at half.
VAL_NME = {("mpd", 0.5): 0.31, ("mpd", 1.0): 0.20, ("mpd", 2.0): 0.27, ("mpd", 4.0): 0.45,
           ("l1", 0.5): 0.40, ("l1", 1.0): 0.33, ("l1", 2.0): 0.21, ("l1", 4.0): 0.60,
           ("huber", 0.5): 0.22, ("huber", 1.0): 0.24, ("huber", 2.0): 0.35, ("huber", 4.0): None}
EXPECTED_CHOICE = {"mpd": SHARED, "l1": 2 * SHARED, "huber": 0.5 * SHARED}  # the lowest NME of each, by hand


class FakeTraining:
    """Stands in for trainer.fit (sweep and full runs) and compare.evaluate_run: records every
    call and answers the table above, so the choice and the plan are checked without training."""

    def __init__(self, val_faces, interrupt_at: int | None = None):
        self.val_faces, self.interrupt_at = val_faces, interrupt_at
        self.sweep_calls, self.full_calls = [], []

    def sweep_fit(self, config, entry, seed, out_dir, resume=False, progress=True, splits=None, record_batches=False):
        assert [s.image_path for s in splits["val"]] == self.val_faces  # scored on the validation split
        self.sweep_calls.append((entry.label, config.optim.lr, config.epochs, seed))
        if self.interrupt_at is not None and len(self.sweep_calls) == self.interrupt_at:
            raise KeyboardInterrupt
        nme = VAL_NME[(entry.label, round(config.optim.lr / SHARED, 6))]
        if nme is None:
            raise trainer.TrainingDiverged("loss became nan")
        return {"best_val_nme": nme, "diverged": False, "history": [{"val_nme": nme}], "batch_digests": []}

    def full_fit(self, config, entry, seed, out_dir, resume=False, progress=True, splits=None, record_batches=False):
        self.full_calls.append((entry.label, config.optim.lr, seed, Path(out_dir).parent.name))
        return {"best_val_nme": 0.2, "diverged": False, "checkpoint": "unused", "history": [], "batch_digests": []}

    @staticmethod
    def evaluate(result, entry, seed, config, test_cache, test, scheme, out_dir, device):
        # tells the rate a run was trained at (face 0), differing between entries and faces
        offset = 0.01 * ["mpd", "l1", "huber"].index(entry.label)
        nme = [0.05 + config.optim.lr + 0.001 * seed + i * (0.001 + offset) for i in range(len(test))]
        return {"name": entry.label, "loss": entry.loss, "model": entry.model.name, "seed": seed,
                "nme": {"image": nme, "inter_ocular": nme}, "history": [], "checkpoint": "unused"}


def fake_compare(config, out_dir, monkeypatch, fake, resume=False) -> dict:
    monkeypatch.setattr(lr_sweep, "fit", fake.sweep_fit)
    monkeypatch.setattr(compare_module, "fit", fake.full_fit)
    monkeypatch.setattr(compare_module, "evaluate_run", fake.evaluate)
    return compare(config, out_dir, progress=False, resume=resume)


def test_the_sweep_chooses_the_lowest_validation_nme_and_reuses_only_equal_rates(faces, tmp_path, monkeypatch):
    config = tiny_config(faces, tmp_path / "cache", epochs=8, factors=[0.5, 1.0, 2.0, 4.0], epochs_fraction=0.25)
    config.losses, config.seeds, config.optim.lr = ["mpd", "l1", "huber"], [3, 4], SHARED
    fake = FakeTraining([s.image_path for s in load_splits(config.data)["val"]])
    results = fake_compare(config, tmp_path / "out", monkeypatch, fake)

    saved = json.loads((tmp_path / "out" / "lr_sweep.json").read_text())
    assert saved["chosen"] == pytest.approx(EXPECTED_CHOICE)
    assert results["lr_sweep"]["chosen"] == saved["chosen"]
    # 3 entries x 4 rates, each 2 of the 8 epochs (0.25), all with the first seed
    assert sorted(fake.sweep_calls) == sorted((e, f * SHARED, 2, 3) for e in ("mpd", "l1", "huber")
                                              for f in (0.5, 1.0, 2.0, 4.0))
    assert [r["diverged"] for r in saved["entries"]["huber"]] == [False, False, False, True]
    # full runs: every entry at the shared rate, then only the entries whose rate differs
    same = {(e, SHARED, s, "runs") for e in ("mpd", "l1", "huber") for s in (3, 4)}
    tuned = {(e, EXPECTED_CHOICE[e], s, "runs_tuned") for e in ("l1", "huber") for s in (3, 4)}
    assert sorted(fake.full_calls) == sorted(same | tuned)
    by_name = {(r["name"], r["seed"]): r for r in results["runs"]}
    assert {r["protocol"] for r in results["runs"]} == {"tuned_lr"}
    assert [by_name[("mpd", s)]["reused"] for s in (3, 4)] == [True, True]
    assert by_name[("mpd", 3)]["run_dir"] == "runs/mpd-seed3"
    assert by_name[("mpd", 3)]["nme"]["inter_ocular"][0] == pytest.approx(0.05 + SHARED + 0.003)
    assert by_name[("l1", 4)]["reused"] is False and by_name[("l1", 4)]["run_dir"] == "runs_tuned/l1-seed4"
    assert by_name[("l1", 4)]["nme"]["inter_ocular"][0] == pytest.approx(0.05 + 2 * SHARED + 0.004)
    same_runs = results["protocols"]["same_lr"]["runs"]
    assert {(r["name"], r["lr"], r["protocol"]) for r in same_runs} == {(e, SHARED, "same_lr") for e in
                                                                         ("mpd", "l1", "huber")}
    assert results["protocols"]["tuned_lr"]["reused"] == ["mpd"]
    section = "\n".join(lr_sweep.report_section(results, results_summary(tmp_path / "out")))
    assert "| huber | 22.000 | 24.000 | 35.000 | diverged | 0.002 | trained (runs_tuned/) |" in section
    assert "| mpd |" in section and "reused" in section.split("| mpd |")[1].split("\n")[0]


def results_summary(out_dir: Path) -> dict:
    return json.loads((out_dir / "results.json").read_text())["summary"]


def test_plan_reuses_a_run_only_when_the_rates_are_equal(tmp_path):
    config = cfg.Config()
    config.optim.lr, config.seeds, config.losses = 0.01, [0], ["mpd", "l1"]
    entries = cfg.validate(config)
    plan = lr_sweep.plan_runs(config, entries, tmp_path, {"mpd": 0.01, "l1": 0.0100001})
    tuned = {p.entry.label: p for p in plan if p.protocol == "tuned_lr"}
    assert tuned["mpd"].reused and tuned["mpd"].run_dir == tmp_path / "runs" / "mpd-seed0"
    assert not tuned["l1"].reused and tuned["l1"].run_dir == tmp_path / "runs_tuned" / "l1-seed0"
    assert tuned["l1"].config.optim.lr == 0.0100001 and config.optim.lr == 0.01  # a copy, not the config
    assert [p.protocol for p in lr_sweep.plan_runs(config, entries, tmp_path)] == ["same_lr", "same_lr"]


def test_a_killed_sweep_continues_without_repeating_finished_runs(faces, tmp_path, monkeypatch):
    config = tiny_config(faces, tmp_path / "cache", epochs=8, factors=[0.5, 1.0, 2.0, 4.0], epochs_fraction=0.25)
    config.losses, config.optim.lr = ["mpd", "l1", "huber"], SHARED
    val_faces = [s.image_path for s in load_splits(config.data)["val"]]
    killed = FakeTraining(val_faces, interrupt_at=6)
    with pytest.raises(KeyboardInterrupt):
        fake_compare(config, tmp_path / "out", monkeypatch, killed)
    assert len(json.loads((tmp_path / "out" / "lr_sweep.json").read_text())["entries"]["l1"]) == 1
    resumed = FakeTraining(val_faces)
    fake_compare(config, tmp_path / "out", monkeypatch, resumed, resume=True)
    assert sorted(resumed.sweep_calls + killed.sweep_calls[:5]) == sorted(
        (e, f * SHARED, 2, 0) for e in ("mpd", "l1", "huber") for f in (0.5, 1.0, 2.0, 4.0))
    assert json.loads((tmp_path / "out" / "lr_sweep.json").read_text())["chosen"] == pytest.approx(EXPECTED_CHOICE)


# ----------------------------------------------------------------------------- config and command line


@pytest.mark.parametrize("tune, key", [
    ("{grid: [0.001, -0.002]}", "tune_lr.grid"),
    ("{grid: [0.001]}", "tune_lr.grid"),
    ("{factors: [1, one]}", "tune_lr.factors"),
    ("{factors: [1, 1.00001]}", "tune_lr.factors"),
    ("{grid: [0.001, 0.002], factors: [1, 2]}", "tune_lr"),
    ("{epochs_fraction: 0}", "tune_lr.epochs_fraction"),
])
def test_a_bad_sweep_is_refused_naming_the_key(tmp_path, capsys, tune, key):
    path = tmp_path / "bad.yaml"
    path.write_text(f"tune_lr: {tune}\n")
    code = cli_main(["compare", "--config", str(path), "--tune-lr", "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"{path}: {key}: " in err, err
    assert not (tmp_path / "out").exists()


def test_the_grid_from_yaml_text_and_factors():
    config = cfg.from_dict({"optim": {"lr": 0.002}, "tune_lr": {"grid": ["1e-3", 3e-3, 2e-3]}})
    assert cfg.tune_lr_rates(config) == [0.001, 0.002, 0.003]  # YAML 1.1 reads 1e-3 as text; sorted
    config = cfg.from_dict({"optim": {"lr": 0.002}})
    assert cfg.tune_lr_rates(config) == [0.0005, 0.001, 0.002, 0.004, 0.008]


def test_cuda_asked_for_without_cuda_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code = cli_main(["train", "--device", "cuda", "--out", str(tmp_path / "run"), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "device: cuda asked for" in err and len(err.splitlines()) == 1, err


# ----------------------------------------------------------------------------- a real sweep


@pytest.fixture(scope="module")
def straight(faces, tmp_path_factory) -> tuple[cfg.Config, Path, dict]:
    out = tmp_path_factory.mktemp("straight")
    config = tiny_config(faces, out / "cache")
    return config, out / "out", compare(config, out / "out", progress=False, record_batches=True)


def test_a_real_sweep_is_scored_on_validation_faces_with_identical_batches(straight):
    config, out, results = straight
    sweep = json.loads((out / "lr_sweep.json").read_text())
    assert sweep["rates"] == [0.002, 0.004] and sweep["epochs"] == 2
    splits = load_splits(config.data)
    scheme = schemes.get(splits["val"][0].scheme)
    digests = []
    for label in ("mpd", "l1"):
        runs = sweep["entries"][label]
        assert [r["lr"] for r in runs] == [0.002, 0.004]
        for run in runs:
            checkpoint = Checkpoint.load(out / run["run"] / "best.pt")
            assert checkpoint.config["optim"]["lr"] == run["lr"] and checkpoint.config["epochs"] == 2
            model = checkpoint.build_model()
            nme = {split: float(np.mean(face_errors(predict_crops(model, trainer_cache(config, splits[split]), 32),
                                                    splits[split], scheme)["inter_ocular"])) for split in ("val", "test")}
            assert run["val_nme"] == pytest.approx(nme["val"], rel=1e-5)
            assert abs(run["val_nme"] - nme["test"]) > 1e-4  # (the test faces score otherwise)
            digests.append(run["batch_digests"])
        best = min(runs, key=lambda r: r["val_nme"])["lr"]
        assert sweep["chosen"][label] == best
        tuned = next(r for r in results["runs"] if r["name"] == label)
        assert tuned["lr"] == best and tuned["reused"] == (best == config.optim.lr)
        assert (out / "runs_tuned" / f"{label}-seed0").is_dir() == (best != config.optim.lr)
    # every entry and rate saw the same batches: the first 2 of the full runs' 4 epochs
    full = results["protocols"]["same_lr"]["runs"][0]["batch_digests"]
    assert len(digests) == 4 and all(d == full[: len(full) // 2] for d in digests) and len(full) > 0
    assert full[: len(full) // 2] != full[len(full) // 2:]


def trainer_cache(config, samples):
    from facemarks.data import cache as crop_cache

    return crop_cache.build(samples, config.input_size, cfg.crop_policy_of(config), root=config.data.cache_dir)


class Interrupted(Exception):
    pass


def test_a_real_sweep_killed_in_a_run_resumes_to_the_same_choice(straight, tmp_path, monkeypatch):
    config, out, results = straight
    calls = []

    def stop(history):
        raise Interrupted

    def killed_in_third_run(*args, **kwargs):
        calls.append(args[1].label)
        if len(calls) == 3:  # the third sweep run stops after its first epoch
            kwargs["on_epoch_end"] = stop
        return trainer.fit(*args, **kwargs)

    monkeypatch.setattr(lr_sweep, "fit", killed_in_third_run)
    with pytest.raises(Interrupted):
        compare(config, tmp_path / "out", progress=False)
    third = tmp_path / "out" / "lr_sweep" / "l1-lr0.002"
    assert Checkpoint.load(third / "last.pt").training["epoch"] == 0
    calls.clear()
    resumed = compare(config, tmp_path / "out", progress=False, resume=True)
    assert calls == ["l1", "l1"]  # the two finished runs are not trained again
    assert [json.loads(line)["epoch"] for line in (third / "log.jsonl").read_text().splitlines()] == [1, 2]
    expected = json.loads((out / "lr_sweep.json").read_text())
    got = json.loads((tmp_path / "out" / "lr_sweep.json").read_text())
    assert got["chosen"] == expected["chosen"]
    for label in ("mpd", "l1"):
        assert [r["val_history"] for r in got["entries"][label]] == [r["val_history"] for r in expected["entries"][label]]
    assert [r["nme"] for r in resumed["runs"]] == [r["nme"] for r in results["runs"]]


# ----------------------------------------------------------------------------- mixed precision


def test_bf16_trains_on_the_cpu_with_fp32_points(faces, tmp_path):
    config = tiny_config(faces, tmp_path / "cache")
    config.precision, config.device = "bf16", "cpu"
    entry = cfg.validate(config)[0]
    run = trainer.prepare(config, entry, 0, tmp_path / "run", None, progress=False)
    batch = next(iter(run.loader))
    model = run.task.model
    dtypes = {}

    def keep_dtype(name):
        def hook(module, inputs, output):
            dtypes.setdefault(name, output.dtype)  # (returns None: the output is unchanged)
        return hook

    next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).register_forward_hook(keep_dtype("conv"))
    next(m for m in model.modules() if isinstance(m, PointsOutput)).register_forward_hook(keep_dtype("points"))
    losses = [trainer.train_step(run, batch)["loss"] for _ in range(12)]
    assert dtypes == {"conv": torch.bfloat16, "points": torch.float32}
    assert all(np.isfinite(losses)) and losses[-1] < 0.7 * losses[0], losses
    assert all(p.dtype == torch.float32 for p in model.parameters())  # the weights stay fp32


def test_bf16_fit_follows_fp32_and_writes_fp32_checkpoints(faces, tmp_path):
    losses = {}
    for precision in ("fp32", "bf16"):
        config = tiny_config(faces, tmp_path / "cache", epochs=5)
        config.precision = precision
        result = trainer.fit(config, "mpd", 0, tmp_path / precision, progress=False)
        losses[precision] = [h["train_loss"] for h in result["history"]]
        assert np.isfinite(result["best_val_nme"])
    assert all(np.isfinite(losses["bf16"])) and losses["bf16"][-1] < 0.95 * losses["bf16"][0], losses
    assert losses["bf16"][-1] == pytest.approx(losses["fp32"][-1], rel=0.1), losses  # same seed and batches
    state = Checkpoint.load(tmp_path / "bf16" / "best.pt").state_dict
    assert all(v.dtype == torch.float32 for v in state.values() if v.is_floating_point())


def test_fp16_on_the_cpu_is_refused_before_any_work(faces, tmp_path):
    config = tiny_config(faces, tmp_path / "cache")
    config.precision = "fp16"
    with pytest.raises(ConfigError, match=r"precision: fp16 needs a CUDA device"):
        trainer.fit(config, "mpd", 0, tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists() and not (tmp_path / "cache").exists()
    config.device = "cpu"
    with pytest.raises(ConfigError, match=r"precision: fp16 needs a CUDA device"):
        cfg.validate(config, "x.yaml")
