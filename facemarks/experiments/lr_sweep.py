"""The learning-rate sweep of `facemarks compare --tune-lr` (config `tune_lr:`) and the plan
of the comparison's full runs under its two protocols.

Protocols:

* "same_lr" (same learning rate): every entry trained at the config's optim.lr, the
  reference's protocol and what `compare` does without --tune-lr.
* "tuned_lr" (each loss at its tuned rate): every entry trained at the rate its sweep chose.

The sweep: for every entry, every rate of the grid (`tune_lr.grid`, or `tune_lr.factors`
times optim.lr) is trained for `tune_lr.epochs_fraction` of the epochs (at least one; the
warm-up and the schedule compressed into the shorter run) with the first seed, on the
training split, and scored by its best NME on the validation split; the test faces are not
used. The rate with the lowest score is chosen (a tie goes to the smaller rate); a rate that
diverges scores nothing. Every sweep run has the same seed, so every entry and rate sees the
same batches (sample order and augmentation draws depend on the seed and epoch only), and
they are the first epochs of that seed's full runs.

Files in the comparison's folder:

* `lr_sweep/<entry>-lr<rate>/`: one run folder per sweep run;
* `lr_sweep.json`: every finished sweep run's score and the chosen rates, written atomically
  after each run, so `--resume` skips the finished runs and continues an unfinished one from
  its last.pt;
* `runs/<entry>-seed<seed>/`: the same_lr runs; `runs_tuned/<entry>-seed<seed>/`: the
  tuned_lr runs of entries whose chosen rate is not the shared one. An entry whose chosen
  rate is the shared rate is not trained twice: its tuned_lr runs are its same_lr runs
  (same config, seed and batches give the same result), marked "reused".
"""

from __future__ import annotations

import copy
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

from facemarks.engine import config as cfg
from facemarks.engine.trainer import TrainingDiverged, fit
from facemarks.errors import DataError, FacemarksError
from facemarks.fileio import write_text

SWEEP_FILE = "lr_sweep.json"
SWEEP_FOLDER = "lr_sweep"
SAME_LR, TUNED_LR = "same_lr", "tuned_lr"
PROTOCOL_FOLDERS = {SAME_LR: "runs", TUNED_LR: "runs_tuned"}
PROTOCOL_TITLES = {SAME_LR: "same learning rate", TUNED_LR: "each loss at its tuned rate"}


def slug(text: str) -> str:
    """`text` as a file name."""
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")


def rate_name(lr: float) -> str:
    return f"{lr:.4g}"  # config validation keeps the grid's names distinct


def with_lr(config: cfg.Config, lr: float) -> cfg.Config:
    """A copy of `config` training at `lr`."""
    changed = copy.deepcopy(config)
    changed.optim.lr = lr
    return changed


def sweep_epochs(config: cfg.Config) -> int:
    return max(1, round(config.tune_lr.epochs_fraction * config.epochs))


def sweep_config(config: cfg.Config, lr: float) -> cfg.Config:
    """The config of one sweep run: `lr` for a share of the epochs, with the warm-up and the
    schedule (fractions of training) compressed into them."""
    short = with_lr(config, lr)
    short.epochs = sweep_epochs(config)
    short.optim.warmup_epochs = config.optim.warmup_epochs * short.epochs / config.epochs
    return short


# ----------------------------------------------------------------------------- the sweep


def sweep(config: cfg.Config, entries: list, splits: dict, out_dir, resume: bool = False, progress: bool = True,
          record_batches: bool = False) -> dict:
    """Run (or, with `resume`, continue) the sweep of every entry into `out_dir`; returns
    the record written to lr_sweep.json: the plan, every sweep run, the chosen rates."""
    out_dir = Path(out_dir)
    path = out_dir / SWEEP_FILE
    plan = {"rates": cfg.tune_lr_rates(config), "seed": config.seeds[0], "epochs": sweep_epochs(config),
            "of_epochs": config.epochs, "shared_lr": config.optim.lr, "num_val_faces": len(splits["val"]),
            "scored_on": "best validation NME (inter-ocular) of the run, validation split"}
    record = {**plan, "entries": {}, "chosen": {}}
    if resume and path.is_file():
        record = _load(path, plan)
    for entry in entries:
        done = record["entries"].setdefault(entry.label, [])
        for lr in plan["rates"]:
            if any(run["lr"] == lr for run in done):
                continue
            done.append(sweep_run(config, entry, lr, splits, out_dir, resume, progress, record_batches))
            done.sort(key=lambda run: run["lr"])
            _save(path, record)
        record["chosen"][entry.label] = choose(entry.label, done)
    _save(path, record)
    return record


def sweep_run(config: cfg.Config, entry: cfg.Entry, lr: float, splits: dict, out_dir: Path, resume: bool,
              progress: bool, record_batches: bool) -> dict:
    """One sweep run (trained, or continued from its last.pt) and its score."""
    folder = f"{SWEEP_FOLDER}/{slug(entry.label)}-lr{rate_name(lr)}"
    try:
        result = fit(sweep_config(config, lr), entry, config.seeds[0], out_dir / folder, resume=resume,
                     progress=progress, splits=splits, record_batches=record_batches)
    except TrainingDiverged as exc:
        print(f"warning: learning-rate sweep: entry {entry.label!r} diverged at lr {rate_name(lr)}", file=sys.stderr)
        return {"lr": lr, "val_nme": None, "diverged": True, "run": folder, "val_history": [], "note": str(exc)}
    score = result["best_val_nme"]
    run = {"lr": lr, "val_nme": score if math.isfinite(score) else None, "diverged": bool(result["diverged"]),
           "run": folder, "val_history": [h["val_nme"] for h in result["history"]]}
    if record_batches:
        run["batch_digests"] = result["batch_digests"]
    return run


def choose(label: str, runs: list[dict]) -> float:
    """The rate with the lowest validation NME among the runs that did not diverge (a tie:
    the smaller rate)."""
    scored = [run for run in runs if not run["diverged"]]
    if not scored:
        raise FacemarksError(f"learning-rate sweep: entry {label!r} diverged at every rate "
                             f"({', '.join(rate_name(run['lr']) for run in runs)}); give lower rates in tune_lr")
    return min(scored, key=lambda run: (run["val_nme"], run["lr"]))["lr"]


def _load(path: Path, plan: dict) -> dict:
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DataError(path, f"not valid JSON ({exc}); remove it to sweep again") from None
    changed = sorted(key for key, value in plan.items() if record.get(key) != value)
    if changed or not isinstance(record.get("entries"), dict):
        raise DataError(path, f"was written by another sweep ({', '.join(changed) or 'entries'} differ); "
                              f"resume with the comparison's own config.yaml, or start a new folder")
    record.setdefault("chosen", {})
    return record


def _save(path: Path, record: dict) -> None:
    write_text(path, json.dumps(record, indent=2, allow_nan=False) + "\n")


# ----------------------------------------------------------------------------- the full runs


@dataclass
class PlannedRun:
    """One full run of the comparison. `reused`: a tuned_lr run at the shared rate, which is
    the same_lr run in `run_dir` (not trained again)."""

    protocol: str
    entry: cfg.Entry
    seed: int
    lr: float
    config: cfg.Config
    run_dir: Path
    reused: bool = False

    def fields(self, out_dir: Path) -> dict:
        """What a results.json run records about its protocol."""
        return {"protocol": self.protocol, "lr": self.lr, "reused": self.reused,
                "run_dir": str(self.run_dir.relative_to(out_dir))}


def plan_runs(config: cfg.Config, entries: list, out_dir, chosen: dict | None = None) -> list[PlannedRun]:
    """The same_lr runs (every seed, every entry) and, given a sweep's `chosen` rates, the
    tuned_lr runs after them; a tuned_lr run whose rate is the shared one reuses the same_lr run."""
    out_dir = Path(out_dir)
    folder = lambda protocol, entry, seed: out_dir / PROTOCOL_FOLDERS[protocol] / f"{slug(entry.label)}-seed{seed}"  # noqa: E731
    plan = [PlannedRun(SAME_LR, e, seed, config.optim.lr, config, folder(SAME_LR, e, seed))
            for seed in config.seeds for e in entries]
    for seed, entry in ((seed, e) for seed in config.seeds for e in entries) if chosen else ():
        lr = chosen[entry.label]
        if lr == config.optim.lr:  # the same config, seed and batches: the same run
            plan.append(PlannedRun(TUNED_LR, entry, seed, lr, config, folder(SAME_LR, entry, seed), reused=True))
        else:
            plan.append(PlannedRun(TUNED_LR, entry, seed, lr, with_lr(config, lr), folder(TUNED_LR, entry, seed)))
    return plan


# ----------------------------------------------------------------------------- report


def report_section(results: dict, summary: dict) -> list[str]:
    """report.md's "Learning rates" section for a comparison with a sweep (else nothing):
    the sweep's scores and chosen rates, and the test results under both protocols."""
    sweep_record = results.get("lr_sweep")
    if not sweep_record:
        return []
    same = results["protocols"][SAME_LR]
    rates = sweep_record["rates"]
    lines = ["## Learning rates", "",
             f"Two protocols: **{PROTOCOL_TITLES[TUNED_LR]}** (the tables above) and **{PROTOCOL_TITLES[SAME_LR]}** "
             f"(every entry at optim.lr = {rate_name(same['lr'])}, the reference's protocol). Sweep: each rate trained "
             f"{sweep_record['epochs']} of the {sweep_record['of_epochs']} epochs (schedule compressed) with seed "
             f"{sweep_record['seed']} on the training split, scored by its best NME on the "
             f"{sweep_record['num_val_faces']} validation faces (not the test faces); the lowest is chosen.", ""]
    reused = {run["name"] for run in results["runs"] if run.get("reused")}
    rows = []
    for label, runs in sweep_record["entries"].items():
        by_rate = {run["lr"]: run for run in runs}
        cells = ["diverged" if by_rate[r]["diverged"] else f"{100 * by_rate[r]['val_nme']:.3f}" for r in rates]
        chosen = sweep_record["chosen"][label]
        note = "reused: the same-rate runs (same rate, seeds, batches)" if label in reused else "trained (runs_tuned/)"
        rows.append([label] + cells + [rate_name(chosen), note])
    lines += _table(["Entry"] + [f"val NME @ {rate_name(r)} (%)" for r in rates] + ["Chosen rate", "Tuned-rate runs"],
                    rows)
    lines += ["", "Test NME inter-ocular (%) under both protocols, mean ± sd over seeds:", ""]
    tuned_rows = _protocol_rows(summary)
    same_rows = _protocol_rows(same["summary"])
    rows = [[name, rate_name(same["lr"]), *same_rows[name], rate_name(sweep_record["chosen"][name]), *tuned_rows[name]]
            for name in sweep_record["entries"]]
    lines += _table(["Entry", "Same rate", "NME (%)", "Rank", "Tuned rate", "NME (%)", "Rank"], rows)
    lines += ["", f"Verdict, {PROTOCOL_TITLES[SAME_LR]}: {same['summary']['verdict']['text']}", "",
              f"Verdict, {PROTOCOL_TITLES[TUNED_LR]}: {summary['verdict']['text']}", ""]
    return lines


def _protocol_rows(summary: dict) -> dict[str, list[str]]:
    """Entry -> [mean ± sd of the inter-ocular NME (%), rank] of one protocol's summary."""
    rows = {}
    for entry in summary["entries"]:
        stat = entry["metrics"]["nme_inter_ocular_pct"]
        text = f"{stat['mean']:.3f}" + (f" ± {stat['std']:.3f}" if stat.get("std") is not None else "")
        rows[entry["name"]] = [text, str(summary["ranking"].index(entry["name"]) + 1)]
    return rows


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + ["| " + " | ".join(r) + " |" for r in rows]
