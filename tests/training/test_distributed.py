"""Training across processes with Lightning's DDP, on CPU with gloo.

Two processes with half the batch each train the same model as one process with the whole
batch: each rank takes every other window of the epoch's global list (``ShardedSampler``), the
ranks' losses are weighted by their share of the batch's target samples, so DDP's averaged
gradient is the one-process gradient. The losses agree to float32 rounding (the sums run in
another order): ``RTOL`` below. A 2-process run stopped mid-epoch and resumed under
``torchrun`` (the real ``neurofm train`` CLI) repeats the uninterrupted run's losses and
weights exactly.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from neurofm.cli import main
from neurofm.data.sampling import RandomWindowSampler, SequentialWindowSampler
from neurofm.data.signals import Intervals
from neurofm.models.poyo import POYOConfig
from neurofm.training.checkpoints import load_checkpoint, resume_point
from neurofm.training.datasets import ShardedSampler
from neurofm.training.resume import LossLog

REPO = Path(__file__).resolve().parents[2]
# No dropout: masks are drawn per rank, so with dropout the curves agree only in distribution.
SMALL = dataclasses.replace(
    POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml"),
    depth=1,
    ffn_dropout=0.0,
    lin_dropout=0.0,
)
#: Relative tolerance between the 1-process and 2-process losses. Measured: <= 4e-7 (float32
#: gradients summed in another order, then averaged by the all-reduce), amplified a little by
#: Adam over the steps; one window missed, repeated or mis-weighted changes a loss by > 1e-3
#: (ranks' losses not weighted by their share of the batch: up to 0.5 relative).
RTOL = 1e-4
GLOBAL_BATCH = 8
#: A per-trial target (the hand's target x at movement onset): a window holds 0, 1 or 2 target
#: samples, so the ranks' halves of a batch weigh differently, as with NaN gaps or classes.
TRIAL_TARGET = "card.fields.target={trials: target_x, at: move_onset_time}"

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# --------------------------------------------------------------------------------------------
# ShardedSampler: each rank its own windows
# --------------------------------------------------------------------------------------------

DOMAINS = {"a": Intervals([0.0, 30.0], [20.5, 41.0]), "b": Intervals([0.0], [12.9])}  # 43


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_training_windows_are_disjoint_and_reproducible_per_epoch(world):
    def shares(epoch):
        out = []
        for rank in range(world):  # each rank builds its own sampler, as in its own process
            s = ShardedSampler(RandomWindowSampler(DOMAINS, 1.0, seed=3), rank, world)
            s.set_epoch(epoch)
            out.append(list(s))
            assert len(s) == len(out[-1]) == 43 // world
        return out

    first = shares(0)
    flat = [w for s in first for w in s]
    assert len(set(flat)) == len(flat) == 43 - 43 % world  # disjoint; the remainder dropped
    assert shares(0) == first  # the same seed and epoch: the same shares
    assert shares(1) != first


@pytest.mark.parametrize("world", [2, 3])
def test_sharded_evaluation_scores_every_window_once(world):
    base = SequentialWindowSampler(DOMAINS, 1.0)  # overlapping windows, in order
    shards = [ShardedSampler(base, rank, world, drop_last=False) for rank in range(world)]
    flat = [w for s in shards for w in s]
    assert sorted(flat) == sorted(base.windows())
    assert sum(len(s) for s in shards) == len(base)


def test_sharded_sampler_takes_rank_and_size_from_the_process_group(monkeypatch):
    import torch.distributed as dist

    base = SequentialWindowSampler(DOMAINS, 1.0)
    assert list(ShardedSampler(base)) == base.windows()  # no group: one process, everything
    monkeypatch.setattr(dist, "is_initialized", lambda: True)
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    assert list(ShardedSampler(base, drop_last=False)) == base.windows()[1::2]


# --------------------------------------------------------------------------------------------
# 2 processes = 1 process with the same global batch; stop and resume under torchrun
# --------------------------------------------------------------------------------------------


def _pipeline(tmp: Path, catalog: Path, **train) -> Path:
    model = tmp / "poyo_small.yaml"
    model.write_text(yaml.safe_dump({"model": "poyo", **dataclasses.asdict(SMALL)}))
    spec = {
        "name": "ddp",
        "dataset": str(REPO / "datasets" / "synthetic_reaching.yaml"),
        "steps": [
            {"ingest": {"out": str(catalog)}},
            {"train": {"model": str(model), "out": "poyo", "accelerator": "cpu", **train}},
        ],
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _losses(work: Path) -> list[float]:
    rows = LossLog.read(work / "poyo" / "losses.csv")
    assert [int(r[0]) for r in rows] == list(range(len(rows)))
    return [float(r[2]) for r in rows]


def _val_r2(work: Path) -> list[float]:
    with open(work / "poyo" / "logs" / "version_0" / "metrics.csv") as f:
        return [float(r["val_r2"]) for r in csv.DictReader(f) if r.get("val_r2")]


class CrashAt:
    """Crash every rank at global step ``step``, as a lost node or a kill would end a job."""

    def __new__(cls, step: int):
        import lightning.pytorch as pl

        class _Crash(pl.Callback):
            def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
                if trainer.global_step == step:
                    raise RuntimeError("simulated crash")

        return _Crash()


def test_two_processes_train_like_one_and_resume_exactly_under_torchrun(
    pretrained_poyo, tmp_path, monkeypatch
):
    catalog = pretrained_poyo[0] / "cat_pre"  # 74 training windows (even: no window dropped)
    pipe = _pipeline(tmp_path, catalog, epochs=2, lr=3e-3, checkpoint_every_n_steps=4)
    half = f"steps.train.batch_size={GLOBAL_BATCH // 2}"
    ddp = ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp_fork", half, TRIAL_TARGET]

    # one process, the whole batch
    one = tmp_path / "one"
    whole = f"steps.train.batch_size={GLOBAL_BATCH}"
    assert main(["train", str(pipe), "--workdir", str(one), whole, TRIAL_TARGET]) == 0
    # two processes (forked by Lightning; gloo), half the batch each
    two = tmp_path / "two"
    assert main(["train", str(pipe), "--workdir", str(two), *ddp]) == 0
    a, b = _losses(one), _losses(two)
    assert len(a) == len(b) == 20  # 2 epochs of ceil(74 / 8) steps
    torch.testing.assert_close(torch.tensor(b), torch.tensor(a), rtol=RTOL, atol=0)
    # validation: every window once across the ranks, scored together
    torch.testing.assert_close(
        torch.tensor(_val_r2(two)), torch.tensor(_val_r2(one)), rtol=RTOL, atol=1e-6
    )
    assert len(_val_r2(one)) == 2

    # two processes crashed at step 14 (mid-epoch 1; last.ckpt holds step 12) ...
    import neurofm.training.poyo as poyo

    make = poyo.make_trainer
    monkeypatch.setattr(
        poyo, "make_trainer", lambda *a, **k: make(*a, **{**k, "callbacks": [CrashAt(14)]})
    )
    stopped = tmp_path / "stopped"
    with pytest.raises(Exception, match="simulated crash"):
        main(["train", str(pipe), "--workdir", str(stopped), *ddp])
    monkeypatch.undo()
    assert len(_losses(stopped)) == 14  # steps 0..13 ran
    point = resume_point(load_checkpoint(stopped / "poyo" / "last.ckpt"))
    assert point == (1, 2), point  # epoch 1, after its first two batches (step 12)

    # ... resumed by a real `neurofm train --resume` on 2 processes under torchrun
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    env.pop("PYTEST_CURRENT_TEST", None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    cmd += ["-m", "neurofm.cli", "train", str(pipe), "--workdir", str(stopped), "--resume"]
    cmd += ["--accelerator", "cpu", "--devices", "2", half, TRIAL_TARGET]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "trained on 2 x cpu, DDPStrategy (precision 32-true), resumed from" in out, out
    assert _losses(stopped) == b  # every step's loss, to the last bit, as if never stopped
    x = torch.load(two / "poyo" / "last.ckpt", weights_only=True)["state_dict"]
    y = torch.load(stopped / "poyo" / "last.ckpt", weights_only=True)["state_dict"]
    for name, value in x.items():
        if torch.is_tensor(value):
            torch.testing.assert_close(value, y[name], rtol=0, atol=0, msg=name)
    # rank 0 alone wrote the run's files (rank 1 wrote no log folders of its own)
    assert sorted(p.name for p in (stopped / "poyo" / "logs").iterdir()) == [
        "version_0",
        "version_1",
    ]


def test_samba_trains_on_two_processes(tiny_samba_catalog, tmp_path):
    """SAMBA under DDP: each rank half the windows; a rank whose batch has no labelled window
    keeps its classifier in the graph (else DDP waits for that gradient forever)."""
    from samba_factory import small_config

    from neurofm.training.samba import SambaTrainConfig, train_samba

    cfg = SambaTrainConfig(epochs=2, batch_size=4)
    kw = dict(progress=False, accelerator="cpu")
    one, _ = train_samba(tiny_samba_catalog, small_config(), cfg, tmp_path / "one", **kw)
    two, ckpt = train_samba(
        tiny_samba_catalog, small_config(), cfg, tmp_path / "two", devices=2,
        strategy="ddp_fork", **kw,
    )  # fmt: skip
    assert one.global_step == 30  # 2 epochs of 15 batches of 4
    assert two.global_step == 14  # 2 epochs of 7 full batches of 4 on each rank
    assert len(LossLog.read(tmp_path / "two" / "losses.csv")) == 14
    assert torch.isfinite(two.trainer.callback_metrics["val_r"])
    assert resume_point(load_checkpoint(ckpt)) == (2, 0)


def test_distribution_flags_become_validated_train_step_options(tmp_path):
    from neurofm.cli import _overrides, _parser
    from neurofm.errors import SpecError
    from neurofm.specs import load_pipeline

    args = _parser().parse_args(
        ["train", "p.yaml", "--devices", "4", "--num-nodes", "2", "--strategy", "ddp"]
    )
    assert _overrides(args) == [
        "steps.train.devices=4",
        "steps.train.num_nodes=2",
        "steps.train.strategy=ddp",
    ]
    pipe = _pipeline(tmp_path, tmp_path / "catalog")
    spec, _, _ = load_pipeline(pipe, _overrides(args))
    train = spec.steps[1].options
    assert (train.devices, train.num_nodes, train.strategy) == (4, 2, "ddp")
    with pytest.raises(SpecError, match=r"pipeline\.yaml.*num_nodes"):
        load_pipeline(pipe, ["steps.train.num_nodes=0"])
    with pytest.raises(SpecError, match=r"pipeline\.yaml.*strategy"):
        load_pipeline(pipe, ["steps.train.strategy=dp"])


def _stat(pid: int | str) -> list[str]:
    """State, parent pid, ... of a process (``/proc/PID/stat`` after the name); [] if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return []


def _alive(pid: int) -> bool:
    return _stat(pid)[:1] not in ([], ["Z"])  # a zombie has ended


def _children(pid: int) -> list[int]:
    procs = [int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()]
    return [p for p in procs if _alive(p) and int(_stat(p)[1]) == pid]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's prctl")
def test_ranks_end_with_a_killed_neurofm_train(pretrained_poyo, tmp_path):
    """``kill -9`` of ``neurofm train --strategy ddp_fork``: its ranks end with it, instead of
    finishing the run and rewriting last.ckpt beside a resumed one."""
    import signal
    import time

    pipe = _pipeline(tmp_path, pretrained_poyo[0] / "cat_pre", epochs=200, batch_size=4)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "neurofm.cli", "train", str(pipe), "--workdir", str(tmp_path)]
    cmd += ["--accelerator", "cpu", "--devices", "2", "--strategy", "ddp_fork"]
    # Started as `neurofm train ... &` in a shell script is: SIGINT ignored. torch ties its
    # ranks to their parent with SIGINT, which they then ignore too.
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    log = tmp_path / "poyo" / "losses.csv"
    deadline = time.monotonic() + 120
    while not (log.is_file() and len(LossLog.read(log)) >= 2):  # the ranks are training
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.05)
    ranks = _children(proc.pid)
    assert len(ranks) == 2, ranks
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 10
    while any(_alive(r) for r in ranks):
        if time.monotonic() > deadline:
            for r in ranks:
                os.kill(r, signal.SIGKILL)
            pytest.fail(f"ranks {ranks} outlived their killed parent")
        time.sleep(0.05)
    steps = len(LossLog.read(log))
    time.sleep(1.0)
    assert len(LossLog.read(log)) == steps  # nothing trains on
