"""Crash-safe training: ``last.ckpt`` every epoch (and every N steps), written atomically, and
resumes that continue exactly, mid-epoch too, after a real ``kill -9`` of ``neurofm train``."""

from __future__ import annotations

import dataclasses
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
import yaml
from torch.utils.data import DataLoader, TensorDataset

from neurofm.cli import main
from neurofm.errors import NeuroFMError
from neurofm.models.poyo import POYOConfig
from neurofm.pipeline import ingest
from neurofm.specs import load_card
from neurofm.synthetic import generate_reaching_dataset
from neurofm.training.checkpoints import (
    CheckpointFile,
    ResumePoint,
    load_checkpoint,
    resume_point,
)
from neurofm.training.poyo import POYOModule, TrainConfig, train_poyo
from neurofm.training.resume import LossLog, ResumableSampler
from neurofm.training.samba import SambaModule, SambaTrainConfig, train_samba
from neurofm.training.trainer import make_trainer

REPO = Path(__file__).resolve().parents[2]
SMALL = dataclasses.replace(POYOConfig.from_yaml(REPO / "models" / "poyo_tiny.yaml"), depth=1)

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> Path:
    """Two small reaching sessions: 96 training windows of 1 s (12 steps of 8 per epoch)."""
    root = tmp_path_factory.mktemp("resume")
    generate_reaching_dataset(
        root / "raw",
        n_subjects=1,
        n_sessions=2,
        n_trials=40,
        n_units_range=(30, 40),
        progress=False,
    )
    card = load_card(REPO / "datasets" / "synthetic_reaching.yaml")
    assert ingest(root / "raw", root / "catalog", card=card, progress=False).ok
    return root / "catalog"


def _losses(out: Path) -> list[tuple[str, str, str]]:
    return LossLog.read(out / "losses.csv")


# --------------------------------------------------------------------------------------------
# last.ckpt: every epoch, every N steps, atomic
# --------------------------------------------------------------------------------------------


class Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.model = torch.nn.Linear(2, 1)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.model(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def on_save_checkpoint(self, checkpoint):
        checkpoint["neurofm"] = {"format": "neurofm.tiny"}


class Snapshots(pl.Callback):
    """What ``last.ckpt`` holds at the start of each epoch and before each step."""

    def __init__(self, path: Path) -> None:
        self.path, self.at_epoch_start, self.before_step = path, {}, {}

    def _read(self):
        if not self.path.is_file():
            return None
        ckpt = torch.load(self.path, weights_only=True)
        return ckpt["global_step"], resume_point(ckpt)

    def on_train_epoch_start(self, trainer, module):
        self.at_epoch_start[trainer.current_epoch] = self._read()

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        self.before_step[trainer.global_step] = self._read()


def _tiny_fit(out: Path, epochs: int, every: int = 0, every_epoch: bool = True) -> Snapshots:
    x = torch.randn(40, 2, generator=torch.Generator().manual_seed(0))
    loader = DataLoader(TensorDataset(x, x.sum(1, keepdim=True)), batch_size=4)  # 10 steps
    snaps = Snapshots(out / "last.ckpt")
    trainer = make_trainer(
        out,
        max_epochs=epochs,
        steps_per_epoch=10,
        progress=False,
        checkpoint_every_n_steps=every,
        checkpoint_every_epoch=every_epoch,
        callbacks=[snaps],
    )
    trainer.fit(Tiny(), loader)
    return snaps


def test_last_ckpt_is_written_at_the_end_of_every_epoch(tmp_path):
    """A run killed in its third epoch keeps the checkpoint of its second (it used to have
    none: Lightning's save_top_k=0 wrote last.ckpt only when training ended)."""
    snaps = _tiny_fit(tmp_path, epochs=3)
    assert snaps.at_epoch_start == {
        0: None,
        1: (10, ResumePoint(1, 0)),
        2: (20, ResumePoint(2, 0)),
    }
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".ckpt", ".tmp")) == [
        "last.ckpt"
    ]


def test_last_ckpt_only_when_training_ends_if_not_every_epoch(tmp_path):
    """What an adaptation asks for (nothing resumes it): no write after each epoch, one at the
    end, complete; steps still checkpoint every N if asked."""
    snaps = _tiny_fit(tmp_path, epochs=3, every_epoch=False)
    assert snaps.at_epoch_start == {0: None, 1: None, 2: None}
    assert resume_point(load_checkpoint(tmp_path / "last.ckpt")) == ResumePoint(3, 0)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 30
    snaps = _tiny_fit(tmp_path / "steps", epochs=2, every=4, every_epoch=False)
    assert snaps.before_step[9] == (8, ResumePoint(0, 8))
    assert snaps.before_step[11] == (8, ResumePoint(0, 8))  # no write at the epoch's end
    assert snaps.before_step[13] == (12, ResumePoint(1, 2))


def test_a_temporary_file_left_by_a_killed_write_is_removed(tmp_path):
    stale = tmp_path / ".last.ckpt.k2j4x9.tmp"  # what a kill in the middle of a write leaves
    stale.write_bytes(b"PK\x03\x04 half a checkpoint")
    (tmp_path / ".other.tmp").write_text("not ours")
    _tiny_fit(tmp_path, epochs=1)
    assert not stale.exists() and (tmp_path / ".other.tmp").exists()


def test_last_ckpt_every_n_steps_inside_epochs(tmp_path):
    snaps = _tiny_fit(tmp_path, epochs=2, every=4)
    # before_step[g]: what last.ckpt holds when g steps are done (written every 4 steps, and
    # at each epoch's end, after its validation, which the 10th step of an epoch is left to)
    assert snaps.before_step[5] == (4, ResumePoint(0, 4))
    assert snaps.before_step[9] == (8, ResumePoint(0, 8))
    assert snaps.before_step[10] == snaps.before_step[11] == (10, ResumePoint(1, 0))
    assert snaps.before_step[12] == (12, ResumePoint(1, 2))
    assert snaps.before_step[19] == (16, ResumePoint(1, 6))
    assert resume_point(load_checkpoint(tmp_path / "last.ckpt")) == ResumePoint(2, 0)
    assert torch.load(tmp_path / "last.ckpt", weights_only=True)["global_step"] == 20
    assert [int(r[0]) for r in _losses(tmp_path)] == list(range(20))  # one row per step


def test_a_failed_write_leaves_the_previous_checkpoint_whole(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = CheckpointFile()
    first = {"state_dict": {"w": torch.ones(3)}, "neurofm": {"format": "neurofm.tiny"}}
    io.save_checkpoint(first, path)

    def dies_half_way(obj, f, *a, **k):  # a crash (full disk, kill) in the middle of a write
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "neurofm": {}}, path)
    monkeypatch.undo()
    torch.testing.assert_close(load_checkpoint(path)["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left


def test_resumable_sampler_skips_the_trained_batches_of_the_resumed_epoch():
    class Epochs:
        def __init__(self):
            self.epoch = 0

        def set_epoch(self, epoch):
            self.epoch = epoch

        def __iter__(self):
            return iter(range(10 * self.epoch, 10 * self.epoch + 10))

        def __len__(self):
            return 10

    s = ResumableSampler(Epochs(), batch_size=3, point=ResumePoint(epoch=2, batches=2))
    # Lightning has not called set_epoch yet (DataLoader workers): the point says epoch 2
    assert list(s) == [26, 27, 28, 29] and len(s) == 10
    s.set_epoch(3)
    assert list(s) == list(range(30, 40))  # later epochs whole


# --------------------------------------------------------------------------------------------
# exact resumes, in process (a crash raised in a step)
# --------------------------------------------------------------------------------------------


def _crash_at(monkeypatch, module_cls, step: int) -> None:
    def crash(self, outputs, batch, batch_idx):
        if self.global_step == step:
            raise RuntimeError("simulated crash")

    monkeypatch.setattr(module_cls, "on_train_batch_end", crash, raising=False)


def test_poyo_resumes_mid_epoch_exactly(catalog, tmp_path, monkeypatch):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, unit_dropout=(10, 20, 30))
    kw = dict(progress=False, checkpoint_every_n_steps=5)
    straight, _ = train_poyo(catalog, SMALL, cfg, tmp_path / "a", **kw)
    assert straight.global_step == 24

    _crash_at(monkeypatch, POYOModule, 17)  # epoch 1, after the step-15 checkpoint
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_poyo(catalog, SMALL, cfg, tmp_path / "b", **kw)
    monkeypatch.undo()
    last = tmp_path / "b" / "last.ckpt"
    assert resume_point(load_checkpoint(last)) == ResumePoint(epoch=1, batches=3)
    assert len(_losses(tmp_path / "b")) == 17  # steps 0..16 ran before the crash

    resumed, _ = train_poyo(catalog, SMALL, cfg, tmp_path / "b", resume=last, **kw)
    assert resumed.global_step == 24
    # steps 15 and 16 ran twice: the log keeps the resumed run's, and equals the straight run's
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")
    assert b"\r" not in (tmp_path / "b" / "losses.csv").read_bytes()  # one line ending
    for (name, a), (_, b) in zip(
        straight.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        if torch.is_tensor(a):
            torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)


def test_resuming_with_other_settings_is_refused(catalog, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, unit_dropout=None)
    _, ckpt = train_poyo(catalog, SMALL, cfg, tmp_path, progress=False, max_steps=2)
    other = dataclasses.replace(cfg, batch_size=4, lr=2e-3)
    with pytest.raises(NeuroFMError, match=r"cannot resume.*batch_size 8 -> 4; lr 0.001 -> 0.002"):
        train_poyo(catalog, SMALL, other, tmp_path, resume=ckpt, progress=False)
    with pytest.raises(NeuroFMError, match=r"cannot resume.*model depth 1 -> 2"):
        train_poyo(
            catalog,
            dataclasses.replace(SMALL, depth=2),
            cfg,
            tmp_path,
            resume=ckpt,
            progress=False,
        )


def test_resuming_on_another_number_of_ranks_is_refused(
    catalog, tmp_path, tiny_samba_catalog, tiny_samba
):
    from samba_factory import small_config

    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, unit_dropout=None)
    _, ckpt = train_poyo(catalog, SMALL, cfg, tmp_path, progress=False, max_steps=2)
    _, samba_ckpt = tiny_samba
    ddp = dict(progress=False, accelerator="cpu", devices=2, strategy="ddp_spawn")
    for path in (ckpt, samba_ckpt):
        assert load_checkpoint(path)["neurofm_resume"]["ranks"] == 1
        message = (
            rf"^{path}: cannot resume: the run was started on 1 rank \(devices x nodes\) and "
            r"would go on on 2; each rank's share .* Resume with the devices it was started with"
        )
        with pytest.raises(NeuroFMError, match=message):  # before any process starts
            if path == ckpt:
                train_poyo(catalog, SMALL, cfg, tmp_path, resume=ckpt, **ddp)
            else:
                train_samba(
                    tiny_samba_catalog, small_config(), SambaTrainConfig(epochs=3, batch_size=4),
                    tmp_path / "samba", resume=samba_ckpt, **ddp,
                )  # fmt: skip


def test_a_damaged_optimizer_state_is_refused_on_resume_only(catalog, tmp_path):
    from neurofm.training.poyo import load_poyo

    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e-3, unit_dropout=None)
    _, ckpt = train_poyo(catalog, SMALL, cfg, tmp_path, progress=False, max_steps=2)
    saved = torch.load(ckpt, weights_only=True)
    assert saved["neurofm"]["training_state_sha256"]
    moments = next(iter(saved["optimizer_states"][0]["state"].values()))["exp_avg_sq"]
    moments.view(-1)[0] = 5.8e28  # one flipped exponent bit's worth
    torch.save(saved, ckpt)  # not resealed: as a disk or a hand would change it
    with pytest.raises(NeuroFMError, match=rf"^{ckpt}: cannot resume: its optimizer state "
                       "changed after it was written"):  # fmt: skip
        train_poyo(catalog, SMALL, cfg, tmp_path, resume=ckpt, progress=False)
    load_poyo(ckpt)  # the weights are intact: evaluating or fine-tuning it is fine


def test_one_training_at_a_time_in_a_run_folder(catalog, tmp_path, caplog):
    import threading

    from neurofm.training.run_folder import claim_run_folder

    cfg = TrainConfig(epochs=1, batch_size=8, lr=1e-3, unit_dropout=None)
    out = tmp_path / "run"
    started, release = threading.Event(), threading.Event()

    def hold() -> None:  # another process's training, as flock sees it: another open file
        with claim_run_folder(out):
            started.set()
            release.wait(60)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        started.wait(60)
        message = (
            rf"^{out}: another training is writing to this folder \(process {os.getpid()} on "
            r".+, since .+\); wait for it to end, or train into another folder"
        )
        with pytest.raises(NeuroFMError, match=message):
            train_poyo(catalog, SMALL, cfg, out, progress=False, max_steps=2)
        assert not (out / "last.ckpt").exists()
    finally:
        release.set()
        holder.join()
    train_poyo(catalog, SMALL, cfg, out, progress=False, max_steps=2)  # free again
    assert not [r for r in caplog.records if "replaces it" in r.getMessage()]
    train_poyo(catalog, SMALL, cfg, out, progress=False, max_steps=2)  # over the first one
    (said,) = [r.getMessage() for r in caplog.records if "replaces it" in r.getMessage()]
    assert said == (
        f"{out / 'last.ckpt'}: an earlier run's checkpoint; this run starts over and replaces "
        "it (--resume continues it instead)"
    )


def test_a_diverging_run_stops_with_a_clear_error_and_saves_no_nan(catalog, tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=8, lr=1e38, unit_dropout=None)  # float32 overflows
    with pytest.raises(NeuroFMError, match=r"^training diverged: the loss is (nan|inf) at step "
                       r"\d+ \(epoch 1\) with a learning rate of .*; .* Start over with a lower "
                       r"learning rate \(--lr\)$"):  # fmt: skip
        train_poyo(catalog, SMALL, cfg, tmp_path, progress=False)
    assert not (tmp_path / "last.ckpt").exists()  # nothing of the diverged run was sealed
    with pytest.raises(SystemExit):  # and the CLI refuses what is not a learning rate
        main(["adapt", "poyo-tiny-synthetic", "x.nwb", "--out", str(tmp_path), "--lr", "inf"])


def test_samba_resumes_mid_epoch_exactly(tiny_samba_catalog, tmp_path, monkeypatch):
    from samba_factory import small_config

    cfg = SambaTrainConfig(epochs=2, batch_size=4)
    kw = dict(progress=False, checkpoint_every_n_steps=3)
    straight, _ = train_samba(tiny_samba_catalog, small_config(), cfg, tmp_path / "a", **kw)
    n = straight.global_step
    per_epoch = n // 2
    crash = per_epoch + 4  # inside the second epoch
    _crash_at(monkeypatch, SambaModule, crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        train_samba(tiny_samba_catalog, small_config(), cfg, tmp_path / "b", **kw)
    monkeypatch.undo()
    last = tmp_path / "b" / "last.ckpt"
    point = resume_point(load_checkpoint(last))
    assert point.epoch == 1 and 0 < point.batches < per_epoch, point
    resumed, _ = train_samba(
        tiny_samba_catalog, small_config(), cfg, tmp_path / "b", resume=last, **kw
    )
    assert resumed.global_step == n
    assert _losses(tmp_path / "b") == _losses(tmp_path / "a")
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=0, msg=name)


# --------------------------------------------------------------------------------------------
# a real `neurofm train`, killed with SIGKILL mid-epoch, resumed with --resume
# --------------------------------------------------------------------------------------------


def _pipeline(tmp: Path, catalog: Path, **train) -> Path:
    model = tmp / "poyo_small.yaml"
    model.write_text(yaml.safe_dump({"model": "poyo", **dataclasses.asdict(SMALL)}))
    spec = {
        "name": "resume",
        "dataset": str(REPO / "datasets" / "synthetic_reaching.yaml"),
        "steps": [
            {"ingest": {"out": str(catalog)}},
            {"train": {"model": str(model), "out": "poyo", **train}},
        ],
    }
    path = tmp / "pipeline.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _neurofm(*args: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    code = "import sys; from neurofm.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.Popen(
        [sys.executable, "-c", code, *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def test_sigkill_mid_epoch_then_resume_gives_the_uninterrupted_losses(catalog, tmp_path):
    train = dict(epochs=2, batch_size=8, lr=1e-3, unit_dropout=[10, 20, 30])
    pipe = _pipeline(tmp_path, catalog, checkpoint_every_n_steps=3, **train)

    # the uninterrupted run (in this process, one torch thread like the subprocesses)
    assert main(["train", str(pipe), "--workdir", str(tmp_path / "straight")]) == 0
    straight = _losses(tmp_path / "straight" / "poyo")
    assert len(straight) == 24  # 2 epochs of 12 steps

    # a real `neurofm train`, killed with SIGKILL as soon as epoch 1 is under way
    work = tmp_path / "killed"
    proc = _neurofm("train", str(pipe), "--workdir", str(work))
    deadline = time.monotonic() + 300
    # (checkpoints every 3 steps: step 14's row comes after the mid-epoch checkpoint of step 15)
    while not any(int(r[1]) >= 1 and int(r[0]) >= 14 for r in _losses(work / "poyo")):
        assert proc.poll() is None, proc.communicate()[0]
        assert time.monotonic() < deadline, "the run did not reach its second epoch"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL  # killed mid-run, not finished
    killed_log = _losses(work / "poyo")
    point = resume_point(load_checkpoint(work / "poyo" / "last.ckpt"))
    assert point is not None and point.epoch >= 1 and len(killed_log) < 24, (point, killed_log)

    # a plain re-run would start over; --resume continues from last.ckpt
    proc = _neurofm("train", str(pipe), "--workdir", str(work), "--resume")
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    assert ", trained on cpu (precision 32-true), resumed from " in out, out
    resumed = _losses(work / "poyo")
    assert [r[0] for r in resumed] == [str(i) for i in range(24)]
    assert resumed == straight  # every step's loss, to the last bit, as if never killed
    a = torch.load(tmp_path / "straight" / "poyo" / "last.ckpt", weights_only=True)
    b = torch.load(work / "poyo" / "last.ckpt", weights_only=True)
    for name, value in a["state_dict"].items():
        if torch.is_tensor(value):
            torch.testing.assert_close(value, b["state_dict"][name], rtol=0, atol=0, msg=name)


def test_resume_without_a_checkpoint_starts_from_the_beginning(catalog, tmp_path, caplog, capsys):
    pipe = _pipeline(tmp_path, catalog, epochs=1, batch_size=48, resume=True, unit_dropout=None)
    assert main(["train", str(pipe), "--workdir", str(tmp_path / "w")]) == 0
    assert "no checkpoint to resume from; training from the start" in caplog.text
    assert len(_losses(tmp_path / "w" / "poyo")) == 2
    first = re.search(r"valid R\^2 (-?[\d.]+) \(per window\)", capsys.readouterr().out)
    # resumed when finished: nothing trains, and the summary keeps the score it recorded
    assert main(["train", str(pipe), "--workdir", str(tmp_path / "w")]) == 0
    again = re.search(r"valid R\^2 (-?[\d.]+) \(per window\)", capsys.readouterr().out)
    assert first and again and again.group(1) == first.group(1)


def test_resume_and_device_flags_become_train_step_overrides():
    from neurofm.cli import _overrides, _parser

    args = _parser().parse_args(
        [
            "run",
            "p.yaml",
            "steps.train.seed=3",
            "--resume",
            "--checkpoint-every",
            "50",
            "--accelerator",
            "gpu",
            "--devices",
            "2",
            "--precision",
            "bf16-mixed",
        ]
    )
    assert _overrides(args) == [
        "steps.train.resume=True",
        "steps.train.checkpoint_every_n_steps=50",
        "steps.train.accelerator=gpu",
        "steps.train.devices=2",
        "steps.train.precision=bf16-mixed",
        "steps.train.seed=3",
    ]
    assert _overrides(_parser().parse_args(["train", "p.yaml"])) == []
