"""`facemarks retest`: a finished comparison's checkpoints tested on other faces give the
figures an independent evaluation of each checkpoint gives, in compare's report format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from facemarks.cli import main as cli_main
from facemarks.engine import config as cfg
from facemarks.engine.evaluate import evaluate_checkpoint
from facemarks.experiments.compare import compare
from facemarks.experiments.retest import retest


@pytest.fixture(scope="module")
def comparison(tmp_path_factory):
    from facemarks.data.synthetic import render

    root = tmp_path_factory.mktemp("retest")
    spec = f"jsonl:{render(root / 'faces', num_faces=48, seed=5, image_size=96)}"
    config = cfg.Config()
    config.data = cfg.DataConfig(spec=spec, cache_dir=str(root / "cache"))
    config.input_size, config.epochs, config.batch_size, config.threads = 32, 1, 8, 1
    config.losses, config.seeds = ["mpd", "wing"], [0, 1]
    compare(config, root / "cmp", progress=False)
    return root, spec


def test_retest_on_the_comparisons_own_test_faces_reproduces_its_figures(comparison, tmp_path):
    root, spec = comparison
    source = json.loads((root / "cmp" / "results.json").read_text())
    found = retest(root / "cmp", spec, "test", tmp_path / "again", cache_dir=root / "cache")
    assert [(r["name"], r["seed"]) for r in found["runs"]] == [(r["name"], r["seed"]) for r in source["runs"]]
    for new, old in zip(found["runs"], source["runs"]):
        np.testing.assert_allclose(new["nme"]["inter_ocular"], old["nme"]["inter_ocular"], rtol=0, atol=1e-9)
        assert new["history"] == old["history"]  # copied, nothing retrained
    assert (tmp_path / "again" / "report.md").read_text().startswith("# ")
    assert len(found["test_poses"]) == len(found["test_faces"])


def test_retest_on_other_faces_equals_evaluating_each_checkpoint(comparison, tmp_path):
    root, spec = comparison
    found = retest(root / "cmp", spec, "val", tmp_path / "val", cache_dir=root / "cache")
    for run in found["runs"]:
        alone = evaluate_checkpoint(run["checkpoint"], spec, "val", cache_dir=root / "cache")
        np.testing.assert_allclose(run["nme"]["inter_ocular"], alone["per_face"]["inter_ocular"], rtol=0, atol=1e-9)
    assert found["test_faces"] == alone["per_face"]["image_path"]


def test_retest_never_overwrites_and_names_what_is_missing(comparison, tmp_path, capsys):
    root, spec = comparison
    argv = ["retest", str(root / "cmp"), "--data", spec, "--split", "val", "--out", str(tmp_path / "r"),
            "--cache-dir", str(root / "cache")]
    assert cli_main(argv) == 0
    before = (tmp_path / "r" / "results.json").read_bytes()
    for bad, expected in ((argv, "--overwrite"),
                          (argv[:-4] + ["--out", str(root / "cmp")] + argv[-2:], "own folder"),
                          (["retest", str(tmp_path / "none")] + argv[2:-4] + ["--out", str(tmp_path / "s")], "results.json")):
        capsys.readouterr()
        assert cli_main(bad) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and expected in err, err
    assert (tmp_path / "r" / "results.json").read_bytes() == before
