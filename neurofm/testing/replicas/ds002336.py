"""Replica of OpenNeuro ds002336 ("XP1", simultaneous EEG-fMRI during motor-imagery
neurofeedback; Lioi et al. 2020), built from neurofm's synthetic EEG-fMRI generator.

Where the layout comes from (public descriptions only): the dataset's card
(``datasets/ds002336.yaml``) and public code that reads the release: BIDS without sessions
or run entities, ``sub-xp1NN/eeg/sub-xp1NN_task-<task>_eeg.vhdr`` (BrainVision, 64 channels
at 5 kHz in the release) beside ``sub-xp1NN/func/sub-xp1NN_task-<task>_bold.nii.gz`` with its
JSON sidecar (RepetitionTime), tasks motorloc, MIpre, MIpost, eegNF, fmriNF, eegfmriNF,
participants.tsv, and events; EEG and BOLD aligned on the scanner's R128 volume markers in the
.vmrk.

What the replica keeps: the names (subjects xp101 and xp110, tasks motorloc and eegNF, no
session, no run), BrainVision files copied with mne-bids so their internal links follow the
names, the scanner's volume markers as the recorder writes them in the .vmrk
(``Response,R128``), the BOLD NIfTI and sidecar, block events only at the root
(``task-<task>_events.tsv``, BIDS inheritance; no per-run events file), participants, and
a parcellation under ``derivatives/`` (the card's notes tell users to put one there). What
it does not: 64 channels at 5 kHz with MR artefacts (it has the generator's 32 clean channels
at 250 Hz), a native-space BOLD.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from neurofm.testing.replicas.base import FileTruth, ReplicaTruth

__all__ = ["SUBJECTS", "TASKS", "VOLUME_MARKER", "build_ds002336"]

VOLUME_MARKER = "R128"

#: synthetic subject -> ds002336 subject (xp110 is the card's held-out subject)
SUBJECTS = {"01": "xp101", "02": "xp110"}
#: synthetic run -> ds002336 task
TASKS = {"1": "motorloc", "2": "eegNF"}


def _scanner_markers(vmrk: Path) -> int:
    """How many volume markers the run's ``.vmrk`` holds (the generator writes them as a
    BrainVision recorder does, ``Response,R128``)."""
    return sum("=Response,R128," in line for line in vmrk.read_text().splitlines())


def build_ds002336(folder: Path, seed: int = 0, duration: float = 90.0) -> ReplicaTruth:
    """Write the replica into ``folder`` (a BIDS root); one run of ``duration`` s per task.

    Returns
    -------
    ReplicaTruth
        ``files`` by EEG path, with ``behaviour['bold']`` the number of volumes.
    """
    from mne_bids.copyfiles import copyfile_brainvision

    from neurofm.synthetic.eeg_fmri import generate_eeg_fmri_dataset

    folder = Path(folder)
    synthetic = folder.parent / f".{folder.name}-synthetic"
    shutil.rmtree(synthetic, ignore_errors=True)
    generate_eeg_fmri_dataset(
        synthetic,
        n_subjects=len(SUBJECTS),
        n_runs=len(TASKS),
        duration=duration,
        seed=seed,
        progress=False,
    )
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("dataset_description.json", "README", "participants.json"):
        if (synthetic / name).is_file():
            shutil.copy(synthetic / name, folder / name)
    truth = ReplicaTruth("ds002336", "", folder, seed=seed)
    participants = (synthetic / "participants.tsv").read_text()
    for old, new in SUBJECTS.items():
        participants = participants.replace(f"sub-{old}\t", f"sub-{new}\t")
        src, dst = synthetic / f"sub-{old}" / "ses-01", folder / f"sub-{new}"

        def rename(name: str, old: str = old, new: str = new) -> str:
            for run, task in TASKS.items():
                name = name.replace(
                    f"sub-{old}_ses-01_task-stim_run-{run}", f"sub-{new}_task-{task}"
                )
            return name.replace(f"sub-{old}_ses-01_", f"sub-{new}_")

        for path in sorted(src.rglob("*")):
            if path.is_dir() or path.suffix in (".eeg", ".vmrk"):
                continue  # BrainVision companions travel with their .vhdr
            target = dst / path.parent.relative_to(src) / rename(path.name)
            target.parent.mkdir(parents=True, exist_ok=True)
            if path.name.endswith("_events.tsv") or path.name.endswith("_events.json"):
                continue  # events live at the root (task-<task>_events.tsv), see below
            if path.suffix == ".vhdr":
                copyfile_brainvision(path, target, verbose=False)
                n_volumes = _scanner_markers(target.with_suffix(".vmrk"))
                rel = target.relative_to(folder).as_posix()
                truth.files[rel] = FileTruth(rel, behaviour={"bold": n_volumes})
            elif path.name.endswith("_scans.tsv"):
                target.write_text(rename(path.read_text()))
            elif path.name.endswith(("_bold.json", "_eeg.json")):
                sidecar = json.loads(path.read_text())
                sidecar["TaskName"] = target.name.split("_task-")[1].split("_")[0]
                target.write_text(json.dumps(sidecar, indent=1))
            else:
                shutil.copy(path, target)
    (folder / "participants.tsv").write_text(participants)
    for run, task in TASKS.items():  # root-level block events, inherited by every run
        events = sorted(synthetic.rglob(f"*/eeg/*task-stim_run-{run}_events.tsv"))[0]
        rows = events.read_text().splitlines()
        blocks = [r for r in rows[1:] if r.split("\t")[2] != VOLUME_MARKER]
        (folder / f"task-{task}_events.tsv").write_text("\n".join([rows[0], *blocks]) + "\n")
    shutil.copytree(
        synthetic / "derivatives" / "neurofm-synth" / "atlas", folder / "derivatives" / "atlas"
    )
    shutil.rmtree(synthetic)
    return truth
