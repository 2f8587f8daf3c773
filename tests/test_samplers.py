"""Samplers: the pose-balanced epoch (the rule recomputed here), its determinism and DDP
shards, independent augmentation of repeated faces, the config keys, entry overrides."""

from __future__ import annotations

import math
from pathlib import Path
from collections import Counter

import numpy as np
import pytest
import yaml

from facemarks import schemes
from facemarks.data import cache as crop_cache
from facemarks.data import formats
from facemarks.data.augment import AugmentConfig
from facemarks.data.dataset import FaceCrops, make_loader
from facemarks.data.samplers import PoseBalancedSampler, ShardedSampler, build_sampler
from facemarks.engine import config as cfg
from facemarks.engine.checkpoint import Checkpoint
from facemarks.engine.trainer import batch_digest, fit
from facemarks.errors import CheckpointError, ConfigError
from facemarks.geometry.crop import BoxCrop
from facemarks.registry import SAMPLERS


def fake_poses(count: int = 203, seed: int = 4) -> np.ndarray:
    """Mostly frontal faces, a thin tail of turned ones (like real data)."""
    rng = np.random.default_rng(seed)
    return np.c_[rng.normal(0, 18, count), rng.normal(0, 12, count), rng.normal(0, 8, count)]


def expected_counts(poses, yaw_edges, pitch_edges, roll_edges, balance, epoch_factor):
    """The rule of the samplers module written out independently: per-face expected visits
    and the faces of every bin."""
    count = len(poses)
    keys = [tuple(sum(abs(pose[axis]) >= e for e in edges) for axis, edges in
                  enumerate((yaw_edges, pitch_edges, roll_edges)) if edges) for pose in poses]
    members: dict = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    num_bins = len(members)
    length = round(epoch_factor * count)
    expected = np.array([length * ((1 - balance) / count + balance / (num_bins * len(members[k]))) for k in keys])
    return length, expected, list(members.values())


def pose_sampler(poses, seed=0, rank=0, world_size=1, **params) -> PoseBalancedSampler:
    return PoseBalancedSampler(list(range(len(poses))), seed, rank, world_size, poses=poses,
                               **PoseBalancedSampler.check_params(params))


@pytest.mark.parametrize("params", [
    {},
    {"balance": 0.5, "epoch_factor": 1.5},
    {"balance": 0.0},
    {"yaw_edges": [10, 20], "pitch_edges": [10], "balance": 0.8, "epoch_factor": 0.7},
    {"yaw_edges": [5, 40, 60, 90]},  # bins beyond the poses stay empty and are dropped
])
def test_each_bin_and_face_gets_its_share(params):
    poses = fake_poses()
    full = {**PoseBalancedSampler.PARAMS, **params}
    length, expected, bins = expected_counts(poses, full["yaw_edges"], full["pitch_edges"], full["roll_edges"],
                                             full["balance"], full["epoch_factor"])
    sampler = pose_sampler(poses, seed=3, **params)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        order = np.asarray(list(sampler))
        assert len(order) == len(sampler) == length
        visits = np.bincount(order % len(poses), minlength=len(poses))
        assert np.all(visits >= np.floor(expected - 1e-9)) and np.all(visits <= np.ceil(expected + 1e-9))
        for members in bins:
            assert abs(visits[members].sum() - expected[members].sum()) < 1 + 1e-9
    if full["balance"] == 1.0:  # every bin L / B times, within one
        assert all(abs(visits[m].sum() - length / len(bins)) < 1 + 1e-9 for m in bins)
    if full["balance"] == 0.0 and full["epoch_factor"] == 1.0:  # uniform: every face once
        assert sorted(order) == list(range(len(poses)))


def test_copies_are_numbered_and_the_draw_depends_on_seed_and_epoch_only():
    poses = fake_poses()
    count = len(poses)
    first, again = pose_sampler(poses, seed=1), pose_sampler(poses, seed=1)
    orders = {}
    for epoch in (0, 1):
        first.set_epoch(epoch)
        again.set_epoch(epoch)
        orders[epoch] = first.epoch_order()
        assert np.array_equal(orders[epoch], again.epoch_order())
        assert np.array_equal(orders[epoch], first.epoch_order())  # drawing twice changes nothing
        # the k-th visit of face i is i + k * N: copies 0, 1, ... of every face, each once
        per_face = Counter(int(v) % count for v in orders[epoch])
        assert sorted(int(v) for v in orders[epoch]) == sorted(i + k * count for i, n in per_face.items() for k in range(n))
    assert not np.array_equal(orders[0], orders[1])
    other_seed = pose_sampler(poses, seed=2)
    assert not np.array_equal(orders[0], other_seed.epoch_order())
    assert max(Counter(int(v) % count for v in orders[0]).values()) > 1  # thin bins are repeated


@pytest.mark.parametrize("world_size", [2, 3])
def test_ddp_shards_reassemble_the_single_process_order(world_size):
    poses = fake_poses(101)
    single = pose_sampler(poses, seed=5, epoch_factor=1.3)
    single.set_epoch(2)
    order = list(single)
    shards = [pose_sampler(poses, seed=5, rank=r, world_size=world_size, epoch_factor=1.3) for r in range(world_size)]
    for shard in shards:
        shard.set_epoch(2)
    parts = [list(shard) for shard in shards]
    assert len({len(p) for p in parts}) == 1 and len(parts[0]) == len(order) // world_size
    interleaved = [value for step in zip(*parts) for value in step]
    assert interleaved == order[: len(interleaved)]


def test_synthetic_faces_use_their_own_pose(tiny_render):
    samples = list(formats.load(tiny_render, "train"))
    sampler = build_sampler("pose_balanced", samples, 0, params={"yaw_edges": [20]})
    truth = np.array([[s.attributes[k] for k in ("yaw", "pitch", "roll")] for s in samples])
    assert np.array_equal(sampler.poses, truth)
    assert np.array_equal(sampler.bins, (np.abs(truth[:, 0]) >= 20).astype(int))


# ----------------------------------------------------------------------------- repeated faces


@pytest.fixture(scope="module")
def tiny_render(tmp_path_factory) -> str:
    from facemarks.data.synthetic import render

    return f"jsonl:{render(tmp_path_factory.mktemp('faces'), num_faces=48, seed=5, image_size=96, progress=False)}"


@pytest.fixture(scope="module")
def train_crops(tiny_render, tmp_path_factory):
    samples = list(formats.load(tiny_render, "train"))
    cache = crop_cache.build(samples, 32, BoxCrop(0.25), root=tmp_path_factory.mktemp("cache"))
    return samples, FaceCrops(cache, 32, AugmentConfig(), schemes.get("300w").flip_permutation, seed=7)


# Batch digests of the uniform sampler on `train_crops` (epochs 0 and 3, batches of 8),
# recorded before repeated faces got their own draws: the change must not move them.
UNIFORM_DIGESTS = ["2cb7d172fc12fe56", "8c509e7152404a9d", "dd61b7e541a53949", "e87d85235fea986a",
                   "4bbc245dbf580f0e", "994efabe5984e617", "7fba86f16ce4797d", "275a5164c4601a82"]


def test_the_uniform_sampler_draws_what_it_always_did(train_crops):
    samples, crops = train_crops
    sampler = build_sampler("uniform", samples, 7)
    digests = []
    for epoch in (0, 3):
        crops.set_epoch(epoch)
        sampler.set_epoch(epoch)
        digests += [batch_digest(batch) for batch in make_loader(crops, sampler, 8, 0, True)]
    assert digests == UNIFORM_DIGESTS


def test_copies_of_a_face_get_their_own_augmentation(train_crops):
    samples, crops = train_crops
    count = len(samples)
    crops.set_epoch(2)
    plain, copy1, copy2 = crops[5], crops[5 + count], crops[5 + 2 * count]
    assert plain["index"] == copy1["index"] == copy2["index"] == 5
    assert not np.array_equal(plain["image"].numpy(), copy1["image"].numpy())
    assert not np.array_equal(copy1["image"].numpy(), copy2["image"].numpy())
    assert not np.allclose(plain["points"].numpy(), copy1["points"].numpy())
    # a copy is the same face: undoing each crop's matrix gives the same cache points
    for item in (plain, copy1):
        matrix = item["matrix"].numpy()
        cache_points = np.linalg.solve(matrix[:, :2], (item["points"].numpy() * 32 - 0.5 - matrix[:, 2]).T).T
        flip = schemes.get("300w").flip_permutation
        same = np.abs(cache_points - crops.cache.points[5]).max() < 1e-3
        flipped = np.abs(cache_points[np.argsort(flip)] - crops.cache.points[5]).max() < 1e-3
        assert same or flipped


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("text,key,message", [
    ("data: {sampler: pose_balanced, sampler_params: {yaw_edge: [10]}}", "data.sampler_params.yaw_edge",
     "unknown parameter; valid: balance, epoch_factor, pitch_edges, roll_edges, yaw_edges"),
    ("data: {sampler: pose_balanced, sampler_params: {yaw_edges: [30, 15]}}", "data.sampler_params.yaw_edges",
     "increasing list"),
    ("data: {sampler: pose_balanced, sampler_params: {yaw_edges: 15}}", "data.sampler_params.yaw_edges", "got 15"),
    ("data: {sampler: pose_balanced, sampler_params: {pitch_edges: [-5]}}", "data.sampler_params.pitch_edges",
     "positive angles"),
    ("data: {sampler: pose_balanced, sampler_params: {roll_edges: [a]}}", "data.sampler_params.roll_edges", "['a']"),
    ("data: {sampler: pose_balanced, sampler_params: {balance: 1.5}}", "data.sampler_params.balance", "[0, 1]"),
    ("data: {sampler: pose_balanced, sampler_params: {balance: true}}", "data.sampler_params.balance", "[0, 1]"),
    ("data: {sampler: pose_balanced, sampler_params: {epoch_factor: 0}}", "data.sampler_params.epoch_factor",
     "(0, 100]"),
    ("data: {sampler_params: {balance: 1}}", "data.sampler_params.balance", "unknown parameter; valid: none"),
    ("data: {sampler_params: 3}", "data.sampler_params", "must be dict"),
    ("data: {sampler: balanced}", "data.sampler", "valid: pose_balanced, uniform"),
    ("data: {synthetic_mix: {share: -1}}", "data.synthetic_mix.share", "[0, 10]"),
    ("data: {synthetic_mix: {share: .nan}}", "data.synthetic_mix.share", "[0, 10]"),
    ("data: {synthetic_mix: {share: 0.2, min_abs_yaw: 70}}", "data.synthetic_mix.min_abs_yaw", "<= 60"),
    ("data: {synthetic_mix: {share: 0.2, max_abs_yaw: 80}}", "data.synthetic_mix.max_abs_yaw", "<= 60"),
    ("data: {synthetic_mix: {share: 0.2, min_abs_yaw: 40, max_abs_yaw: 35}}", "data.synthetic_mix.max_abs_yaw",
     "min_abs_yaw < max_abs_yaw"),
    ("data: {synthetic_mix: {seed: -1}}", "data.synthetic_mix.seed", ">= 0"),
    ("data: {synthetic_mix: {sahre: 1}}", "data.synthetic_mix.sahre", "unknown key"),
    ("data: {synthetic_mix: 0.2}", "data.synthetic_mix", "must be a mapping"),
])
def test_new_data_keys_are_checked_with_the_key_named(tmp_path, text, key, message):
    check_refused(tmp_path, text, key, message)


def entry_text(overrides, name="other") -> str:
    entry = {"loss": "wing", "overrides": overrides}
    if name:
        entry["name"] = name
    return yaml.safe_dump({"losses": ["wing", entry]}, default_flow_style=True)


@pytest.mark.parametrize("overrides,key,message", [
    ({"data": {"spec": "300w:elsewhere"}}, "losses[1].overrides.data.spec", "cannot differ between entries"),
    ({"data": {"test_split": "val"}}, "losses[1].overrides.data.test_split", "data.{sampler, sampler_params"),
    ({"data": {"val_fraction": 0.2}}, "losses[1].overrides.data.val_fraction", "cannot differ"),
    ({"crop": {"margin": 0.3}}, "losses[1].overrides.crop", "overridable: data, augment"),
    ({"input_size": 64}, "losses[1].overrides.input_size", "overridable: data, augment"),
    ({"data": {"sampler": "nosuch"}}, "losses[1].overrides.data.sampler", "valid: pose_balanced, uniform"),
    ({"data": {"sampler": 5}}, "losses[1].overrides.data.sampler", "must be str"),
    ({"data": {"sampler": "pose_balanced", "sampler_params": {"balance": 2}}},
     "losses[1].overrides.data.sampler_params.balance", "[0, 1]"),
    ({"data": {"synthetic_mix": {"share": 20}}}, "losses[1].overrides.data.synthetic_mix.share", "[0, 10]"),
    ({"data": {"synthetic_mix": {"shar": 1}}}, "losses[1].overrides.data.synthetic_mix.shar", "unknown key"),
    ({"augment": {"params": {"rotation": -5}}}, "losses[1].overrides.augment.params", "rotation"),
    ({"augment": {"enabled": "no"}}, "losses[1].overrides.augment.enabled", "must be bool"),
    ({"data": 3}, "losses[1].overrides.data", "must be a mapping"),
    ([1], "losses[1].overrides", "must be a mapping"),
])
def test_entry_overrides_are_checked_with_the_key_named(tmp_path, overrides, key, message):
    check_refused(tmp_path, entry_text(overrides), key, message)


def test_an_entry_with_overrides_needs_a_name(tmp_path):
    check_refused(tmp_path, entry_text({"data": {"sampler": "pose_balanced"}}, name=None), "losses[1].name",
                  "needs a name")


def check_refused(tmp_path, text, key, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text + "\n")
    with pytest.raises(ConfigError) as caught:
        cfg.load(path)
    assert str(caught.value).startswith(f"{path}: {key}: "), str(caught.value)
    assert message in str(caught.value), str(caught.value)


def test_overrides_replace_only_their_fields():
    config = cfg.Config()
    config.losses = ["wing", {"name": "b", "loss": "wing", "overrides": {
        "data": {"sampler": "pose_balanced", "sampler_params": {"balance": 0.5}},
        "augment": {"enabled": False}}}]
    plain, other = cfg.validate(config)
    assert cfg.config_for_entry(config, plain) is config
    changed = cfg.config_for_entry(config, other)
    assert (changed.data.sampler, changed.data.sampler_params, changed.augment.enabled) == (
        "pose_balanced", {"balance": 0.5}, False)
    assert cfg.to_dict(config)["data"]["sampler"] == "uniform" and config.augment.enabled  # the config is untouched
    before, after = cfg.to_dict(config), cfg.to_dict(changed)
    for section in before:
        for name in (before[section] if isinstance(before[section], dict) else [None]):
            moved = name in cfg.OVERRIDABLE.get(section, ()) and name in other.overrides.get(section, {})
            value = (lambda c: c[section] if name is None else c[section][name])
            assert (value(before) != value(after)) == moved, (section, name)
    assert "overrides" not in plain.to_dict() and other.to_dict()["overrides"] == other.overrides


def test_the_shipped_pose_config_validates():
    config = cfg.load(cfg_path("cpu_300w_pose.yaml"))
    entries = cfg.validate(config)
    assert [e.label for e in entries] == ["uniform", "pose_balanced", "synthetic_mix"]
    effective = [cfg.config_for_entry(config, e) for e in entries]
    assert [c.data.sampler for c in effective] == ["uniform", "pose_balanced", "uniform"]
    assert [c.data.synthetic_mix.share for c in effective] == [0.0, 0.0, 0.2]
    assert (config.model.name, config.input_size, config.epochs, config.seeds) == ("dsnet_heatmap", 128, 20, [0, 1, 2])


def cfg_path(name):
    from pathlib import Path

    return Path(__file__).resolve().parents[1] / "configs" / name


# ----------------------------------------------------------------------------- overrides reach fit


class Recording(ShardedSampler):
    """Every face once, in order; records the parameters it was built with."""

    PARAMS = {"level": 0}
    built: list = []

    def __init__(self, samples, seed, rank=0, world_size=1, level=0):
        super().__init__(samples, seed, rank, world_size)
        Recording.built.append(level)

    def epoch_order(self):
        return np.arange(len(self.samples))


def test_entry_overrides_reach_fit_and_resume_checks_them(tiny_render, tmp_path, monkeypatch):
    monkeypatch.setitem(SAMPLERS._entries, "recording", Recording)
    monkeypatch.setitem(SAMPLERS._info, "recording", {})
    monkeypatch.setattr(Recording, "built", [])
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=tiny_render, cache_dir=str(tmp_path / "cache"))
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 1, 8, 1
    config.losses = ["wing", {"name": "level3", "loss": "wing",
                              "overrides": {"data": {"sampler": "recording", "sampler_params": {"level": 3}}}}]
    plain, level3 = cfg.validate(config)
    fit(config, plain, 0, tmp_path / "a", progress=False)
    assert Recording.built == []  # the config's own sampler: uniform
    result = fit(config, level3, 0, tmp_path / "b", progress=False)
    assert Recording.built == [3]
    saved = Checkpoint.load(result["checkpoint"])
    assert saved.config["data"]["sampler"] == "recording" and saved.training["entry"]["overrides"] == level3.overrides
    fit(config, level3, 0, tmp_path / "b", resume=True, progress=False)  # finished: resumes to nothing
    config.losses[1]["overrides"]["data"]["sampler_params"]["level"] = 4
    with pytest.raises(CheckpointError, match=r"was written by entry .*level.: 3"):
        fit(config, cfg.validate(config)[1], 0, tmp_path / "b", resume=True, progress=False)


def test_epoch_length_sets_the_steps(tiny_render, tmp_path):
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=tiny_render, cache_dir=str(tmp_path / "cache"), sampler="pose_balanced",
                                 sampler_params={"yaw_edges": [15], "epoch_factor": 2.0})
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 1, 8, 1
    config.losses = ["wing"]
    cfg.validate(config)
    result = fit(config, "wing", 0, tmp_path / "run", progress=False, record_batches=True)
    num_train = len(formats.load(tiny_render, "train"))
    assert len(result["batch_digests"]) == math.floor(2 * num_train / 8)


def test_the_pose_config_reads_300w_by_a_relative_path_and_balances_it(data_300w, monkeypatch):
    """The shipped config's spec is relative to the repository (300w:../shared/data/300w); the
    300W reader once joined it twice and refused every image as outside the dataset."""
    import os

    from facemarks.data.splits import load_splits

    repo = cfg_path("").parent
    monkeypatch.chdir(repo)
    config = cfg.load(cfg_path("cpu_300w_pose.yaml"))
    config.data.spec = f"300w:{os.path.relpath(data_300w, repo)}"
    splits = load_splits(config.data)
    assert (len(splits["train"]) + len(splits["val"]), len(splits["test"])) == (2012, 554)  # shared/data/README.md
    entry = cfg.validate(config)[1]
    data = cfg.config_for_entry(config, entry).data
    sampler = build_sampler(data.sampler, splits["train"], 0, params=data.sampler_params)
    order = np.asarray(list(sampler)) % len(splits["train"])
    yaw_bins = np.digitize(np.abs(sampler.poses[:, 0]), data.sampler_params["yaw_edges"])
    counts = np.bincount(yaw_bins[order])
    assert len(order) == len(splits["train"]) and np.abs(counts - len(order) / 3).max() < 1 + 1e-9
    assert np.bincount(yaw_bins)[2] < len(order) / 3  # the |yaw| >= 30 faces are a thin bin, repeated


# ----------------------------------------------------------------------------- synthetic mix


def mix_config(spec, cache_dir, **mix) -> cfg.Config:
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, cache_dir=str(cache_dir), synthetic_mix=cfg.SyntheticMix(**mix))
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 1, 8, 1
    config.losses = ["wing"]
    cfg.validate(config)
    return config


def test_the_synthetic_mix_adds_thin_poses_to_training_only(tiny_render, tmp_path):
    from facemarks.data.mix import mix_directory
    from facemarks.data.splits import load_splits
    from facemarks.engine.trainer import prepare

    config = mix_config(tiny_render, tmp_path / "cache", share=0.5, min_abs_yaw=35, max_abs_yaw=60, seed=2)
    real = load_splits(config.data)
    run = prepare(config, cfg.validate(config)[0], 0, tmp_path / "run", None, False)
    trained = run.train_set.cache.samples
    added = trained[len(real["train"]):]
    assert len(added) == round(0.5 * len(real["train"])) and paths(trained[:len(real["train"])]) == paths(real["train"])
    yaws = np.array([s.attributes["yaw"] for s in added])
    assert np.all((np.abs(yaws) >= 35) & (np.abs(yaws) <= 60)) and (yaws > 0).any() and (yaws < 0).any()
    assert {s.scheme for s in added} == {"300w"} and all(s.landmarks.shape == (68, 2) for s in added)
    assert paths(run.val_samples) == paths(real["val"]) and len(run.sampler.samples) == len(trained)
    assert not set(paths(added)) & set(paths(real["val"]) + paths(real["test"]))
    folder = mix_directory(config.data.synthetic_mix, len(added), config.data.cache_dir)
    assert all(Path(s.image_path).parent.parent == folder.resolve() for s in added)
    stamp = (folder / "faces.jsonl").stat().st_mtime_ns
    again = prepare(config, cfg.validate(config)[0], 1, tmp_path / "run2", None, False)  # rendered once, reused
    assert (folder / "faces.jsonl").stat().st_mtime_ns == stamp and paths(again.train_set.cache.samples) == paths(trained)
    # the pose-balanced sampler bins the added faces by their true pose
    config.data.sampler, config.data.sampler_params = "pose_balanced", {"yaw_edges": [30]}
    balanced = prepare(config, cfg.validate(config)[0], 0, tmp_path / "run3", None, False).sampler
    assert np.array_equal(balanced.poses[len(real["train"]):, 0], yaws) and np.all(balanced.bins[len(real["train"]):] == 1)


def paths(samples) -> list:
    return [s.image_path for s in samples]


def test_mixed_faces_are_not_those_of_the_plain_synthetic_dataset():
    from facemarks.data.synthetic import Renderer, generate_face

    renderer = Renderer()
    plain_image, plain_points, plain = generate_face(0, 3, 96, renderer)
    again_image, _, again = generate_face(0, 3, 96, renderer)
    assert plain == again and np.array_equal(plain_image, again_image)  # the plain stream is untouched
    image, points, turned = generate_face(0, 3, 96, renderer, abs_yaw=(40.0, 50.0))
    assert 40 <= abs(turned["yaw"]) <= 50 and turned["roll"] != plain["roll"]


def test_a_mix_needs_training_faces_in_its_scheme():
    from facemarks.engine.trainer import check_synthetic_mix

    config = cfg.Config()
    config.losses = ["wing", {"name": "mixed", "loss": "wing", "overrides": {"data": {"synthetic_mix": {"share": 0.2}}}}]
    entries = cfg.validate(config)
    check_synthetic_mix(config, entries, "300w")
    with pytest.raises(ConfigError, match=r"losses\[1\].overrides.data.synthetic_mix: synthetic faces have the 68 "
                                          r"points of the '300w' scheme, but the training faces use 'wflw'"):
        check_synthetic_mix(config, entries, "wflw")
    config.data.synthetic_mix.share = 0.1
    with pytest.raises(ConfigError, match=r"^config: data.synthetic_mix: "):
        check_synthetic_mix(config, entries[:1], "wflw")
