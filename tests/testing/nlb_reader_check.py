"""Read NLB replica files with the official NLB reader (nlb_tools 0.0.4); run with the Python
of an environment that has nlb_tools, not neurofm's (nlb_tools pins old pandas/numpy, so it is
installed there with ``pip install --no-deps nlb-tools==0.0.4`` beside numpy, pandas, scipy,
h5py and pynwb).

    python nlb_reader_check.py DATASET FILE.nwb [DATASET FILE.nwb ...]

For each file it builds ``NWBDataset`` (the benchmark's loader: every series on the 1 ms grid,
units split by ``heldout``, spikes NaN outside ``obs_intervals``), then the benchmark's
training tensors with behaviour (``make_train_input_tensors(..., include_behavior=True)``)
and its evaluation inputs on the ``val`` split, and prints one JSON line per file with the
shapes. Two adaptations to pandas >= 3, which nlb_tools predates: the continuous data's index
is re-sorted after loading (pandas 3 no longer sorts an outer join of the series' indexes,
and nlb_tools slices it by time), and ``NWBDataset.resample`` is tried but its failure is
reported instead of stopping the check (it relies on pandas behaviour that changed). Exits 1
if any file cannot be read.
"""

from __future__ import annotations

import json
import sys
import warnings


def check(dataset: str, path: str) -> dict:
    import numpy as np
    from nlb_tools.make_tensors import make_eval_input_tensors, make_train_input_tensors
    from nlb_tools.nwb_interface import NWBDataset

    out: dict = {"dataset": dataset, "file": path}
    ds = NWBDataset(path)
    ds.data = ds.data.sort_index()
    out["fields"] = sorted(set(ds.data.columns.get_level_values(0)))
    out["bins"] = len(ds.data)
    out["trials"] = len(ds.trial_info)
    out["splits"] = ds.trial_info["split"].value_counts().to_dict()
    train = make_train_input_tensors(
        ds, dataset, trial_split="train", save_file=False, include_behavior=True
    )
    out["train"] = {k: list(v.shape) for k, v in train.items()}
    behaviour = np.asarray(train["train_behavior"], dtype=float)
    out["behavior_nan_fraction"] = round(float(np.isnan(behaviour).mean()), 4)
    evaluation = make_eval_input_tensors(ds, dataset, trial_split="val", save_file=False)
    out["eval"] = {k: list(v.shape) for k, v in evaluation.items()}
    try:
        ds.resample(5)
        out["resample_5ms"] = len(ds.data)
    except Exception as exc:  # pandas >= 3: see the module docstring
        out["resample_5ms"] = f"skipped ({type(exc).__name__}: {str(exc)[:80]})"
    return out


def main(argv: list[str]) -> int:
    warnings.simplefilter("ignore")
    if len(argv) % 2:
        print("usage: nlb_reader_check.py DATASET FILE [DATASET FILE ...]", file=sys.stderr)
        return 2
    failed = 0
    for dataset, path in zip(argv[::2], argv[1::2], strict=True):
        try:
            print(json.dumps(check(dataset, path)))
        except Exception as exc:
            failed += 1
            print(
                json.dumps(
                    {"dataset": dataset, "file": path, "error": f"{type(exc).__name__}: {exc}"}
                )
            )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
