"""The training loop shared by every trained model: checkpoints, resume, logs, signals.

Built for week-long runs that will be interrupted.  A run directory holds

  config.yaml      the model name and resolved config (what --resume is checked against)
  checkpoint.pt    the newest checkpoint (written atomically: temp file + os.replace)
  losses.csv       one row per finished epoch; rows after the checkpoint are dropped on resume
  samples/         extxyz sample dumps (fixed seed, so they show how training progresses)
  model.pt         the final model (what ``dismai sample`` reads)

A checkpoint holds everything the trajectory depends on: weights, optimiser states, the
epoch/batch position, the running epoch averages, and the states of every random number
generator (torch CPU/CUDA, numpy, python, the data-order generator and the model's own
generators).  On CPU a run interrupted at any step (Ctrl-C, SIGTERM, kill -9 followed by
--resume) therefore ends with exactly the weights of an uninterrupted run (same machine and
thread count).
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import signal
import threading
import time
from pathlib import Path
from typing import ClassVar

import numpy as np
import yaml

from dismai.errors import ModelError, RunDirError
from dismai.fileio import atomic_path, write_text
from dismai.models.base import (
    FILE_FORMAT,
    FILE_VERSION,
    CheckpointError,
    GenerativeModel,
    read_torch_file,
)
from dismai.models.config import TrainConfig, config_differences, config_to_dict
from dismai.structures import StructureSet

__all__ = ["TrainableModel", "Trainer", "RunDirError", "TrainingInterrupted", "select_device",
           "adam_with_plateau", "generator_state", "restore_generator", "CHECKPOINT",
           "MODEL_FILE", "CONFIG_FILE",
           "LOSSES_FILE"]

CHECKPOINT = "checkpoint.pt"
MODEL_FILE = "model.pt"
CONFIG_FILE = "config.yaml"
LOSSES_FILE = "losses.csv"


class TrainingInterrupted(Exception):
    """Training stopped by SIGINT/SIGTERM after writing a checkpoint."""

    def __init__(self, run_dir, step: int, signum: int):
        self.run_dir, self.step, self.signum = run_dir, step, signum
        name = signal.Signals(signum).name
        where = f"checkpoint written to {Path(run_dir) / CHECKPOINT}" if run_dir else "no run dir"
        super().__init__(f"{name} at step {step}; {where}")


def select_device(name: str = "auto"):
    """CUDA when present (or asked for), otherwise CPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def adam_with_plateau(params, cfg) -> dict:
    """{"adam", "plateau"}: Adam and its ReduceLROnPlateau on the validation loss, the
    optimiser both score models publish (cfg: lr, beta1, beta2, adam_eps, plateau_factor,
    plateau_patience, min_lr).  ``plateau.last_val`` holds the newest validation loss and
    is saved with the scheduler state."""
    import torch

    adam = torch.optim.Adam(params, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.adam_eps)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(
        adam, mode="min", factor=cfg.plateau_factor, patience=cfg.plateau_patience,
        min_lr=cfg.min_lr)
    plateau.last_val = None
    return {"adam": adam, "plateau": plateau}


def generator_state(gen, device) -> dict:
    """A model's noise generator as a checkpoint entry (with the device it lives on)."""
    return {"noise": gen.get_state(), "device": device.type}


def restore_generator(gen, states: dict, device) -> None:
    """Restore a noise generator from :func:`generator_state`; after a CPU <-> CUDA move,
    reseed it from the saved state instead.

    Generator states are device-specific, and a device change breaks bit-identity anyway;
    the reseeded stream is still a deterministic function of the checkpoint.
    """
    import hashlib

    if states.get("device", "cpu") == device.type:
        gen.set_state(states["noise"])
    else:
        digest = hashlib.sha256(states["noise"].numpy().tobytes()).digest()
        gen.manual_seed(int.from_bytes(digest[:8], "little"))


class TrainableModel(GenerativeModel):
    """A model trained by :class:`Trainer`: it supplies networks, optimisers and one step."""

    Config: ClassVar[type[TrainConfig]] = TrainConfig
    #: Columns of losses.csv after "epoch", in order.
    loss_columns: ClassVar[tuple[str, ...]] = ()

    # --- hooks the subclass implements -------------------------------------------------
    def modules(self) -> dict:
        """name -> torch.nn.Module; everything with weights (built by _build)."""
        raise NotImplementedError

    def make_optimizers(self) -> dict:
        """name -> torch.optim.Optimizer over the modules' parameters.

        The Trainer calls it once per fit and stores the result as ``self.optimizers``.
        """
        raise NotImplementedError

    def prepare_data(self, train: StructureSet, val: StructureSet | None) -> None:
        """Move data to the device and precompute features (must not draw random numbers)."""
        raise NotImplementedError

    def epoch_size(self) -> int:
        """Number of training items per epoch (after augmentation)."""
        raise NotImplementedError

    def epoch_items(self, rng: np.random.Generator) -> np.ndarray:
        """This epoch's epoch_size() training items in order (e.g. structure indices)."""
        raise NotImplementedError

    def start_epoch(self, epoch: int) -> None:
        """Per-epoch schedule (learning rates); a pure function of `epoch`."""

    def train_step(self, items: np.ndarray, batch_index: int) -> dict:
        """One optimisation step; returns column -> (value, weight) for the epoch averages.

        Values may be 0-d tensors on the model's device: they are summed there and read
        back once per epoch, so a GPU step never waits for the host.
        """
        raise NotImplementedError

    def rng_states(self) -> dict:
        """States of the model's own generators (name -> ByteTensor)."""
        return {}

    def set_rng_states(self, states: dict) -> None:
        """Restore what rng_states() returned."""

    # --- provided ----------------------------------------------------------------------
    @property
    def device(self):
        return select_device(self.config.device)

    def state_dict(self) -> dict:
        return {f"{name}.{k}": v.detach().cpu() for name, mod in self.modules().items()
                for k, v in mod.state_dict().items()}

    def load_state_dict(self, state: dict) -> None:
        mods = self.modules()
        parts: dict[str, dict] = {name: {} for name in mods}
        for key, value in state.items():
            name, _, sub = key.partition(".")
            if name not in parts:
                raise CheckpointError(f"weights for unknown part {name!r} of {self.name}")
            parts[name][sub] = value
        for name, mod in mods.items():
            mod.load_state_dict(parts[name], strict=True)

    #: file suffix of the trainer's sample dumps (write_samples)
    sample_suffix: ClassVar[str] = ".extxyz"

    def data_fingerprint(self, train, val) -> str:
        """Hash of the training data: a checkpoint resumes only on the same data."""
        return _data_fingerprint(train, val)

    def set_train_mode(self, training: bool) -> None:
        for mod in self.modules().values():
            mod.train(training)

    def fit(self, train: StructureSet, val: StructureSet | None = None, *, run_dir=None,
            resume: bool = False, progress: bool = False, on_step=None) -> None:
        """Train with the shared loop; see :class:`Trainer` (on_step: test hook)."""
        Trainer(self, run_dir, progress=progress, on_step=on_step).fit(train, val, resume=resume)


class PermutedEpochs:
    """Mixin for a TrainableModel whose epoch visits every training structure once, in a
    fresh random order; prepare_data sets ``self._n_train``.  Remembers the epoch index."""

    _n_train: int = 0
    _epoch: int = 0

    def epoch_size(self) -> int:
        return self._n_train

    def epoch_items(self, rng: np.random.Generator) -> np.ndarray:
        return rng.permutation(self._n_train)

    def start_epoch(self, epoch: int) -> None:
        self._epoch = epoch

    def validation_due(self, batch_index: int) -> bool:
        """True on the last batch of every ``config.val_every``-th epoch (0: never); the
        host sets ``self._per_epoch``, its number of batches per epoch."""
        every = self.config.val_every
        return bool(every) and batch_index == self._per_epoch - 1 \
            and (self._epoch + 1) % every == 0


def _data_fingerprint(train: StructureSet, val: StructureSet | None) -> str:
    import hashlib

    h = hashlib.sha256()
    for s in (train, val):
        if s is None:
            h.update(b"none")
            continue
        h.update(np.ascontiguousarray(s.lattice).tobytes())
        h.update("\x00".join(s.species).encode())
        h.update(np.ascontiguousarray(s.frac).tobytes())
    return h.hexdigest()


@contextlib.contextmanager
def _stop_signals():
    """Turn the first SIGINT/SIGTERM into a flag checked between steps; a second one aborts."""
    flag = {"signum": None}
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag["signum"] is not None:
            raise KeyboardInterrupt
        flag["signum"] = signum

    old = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield flag
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def _global_rng_states() -> dict:
    import torch

    np_state = np.random.get_state()
    states = {
        "torch": torch.get_rng_state(),
        "numpy": {"key": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": json.dumps(random.getstate()),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_global_rng_states(states: dict) -> None:
    import torch

    torch.set_rng_state(states["torch"])
    n = states["numpy"]
    np.random.set_state(("MT19937", n["key"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss = json.loads(states["python"])
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


@contextlib.contextmanager
def _seeded_global_rngs(seed: int):
    """Seed the global random, numpy and torch generators for the run (weight init and
    dropout draw from them) and give the caller's states back afterwards, so training
    never changes random numbers outside itself."""
    import torch

    caller = _global_rng_states()
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    try:
        yield
    finally:
        _set_global_rng_states(caller)


class Trainer:
    """Runs epochs of ``model.train_step`` with checkpoints, resume, CSV log and dumps."""

    def __init__(self, model: TrainableModel, run_dir=None, progress: bool = False, on_step=None):
        self.model = model
        self.cfg: TrainConfig = model.config
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.progress = progress
        self.on_step = on_step

    # ------------------------------------------------------------------ run directory
    def _expected_header(self) -> dict:
        return {"model": self.model.name, "config": config_to_dict(self.cfg)}

    def _check_run_dir(self, resume: bool) -> bool:
        """True when there is a checkpoint to resume from; errors leave the folder untouched."""
        if self.run_dir is None:
            return False
        ckpt = self.run_dir / CHECKPOINT
        cfg_file = self.run_dir / CONFIG_FILE
        if not resume:
            if ckpt.exists() or cfg_file.exists() or (self.run_dir / MODEL_FILE).exists():
                raise RunDirError(
                    f"{self.run_dir} already holds a training run; pass --resume to continue it "
                    "or choose another --out"
                )
            return False
        if cfg_file.exists():
            try:
                old = yaml.safe_load(cfg_file.read_text()) or {}
            except yaml.YAMLError:
                old = {}
            self._check_same_run(old, str(cfg_file))
        return ckpt.exists()

    def _check_same_run(self, old: dict, source: str) -> None:
        new = self._expected_header()
        if old.get("model") != new["model"]:
            raise RunDirError(
                f"{source}: run was trained with model {old.get('model')!r}, not {new['model']!r}"
            )
        diff = config_differences(old.get("config") or {}, new["config"],
                                  ignore=self.cfg.RESUMABLE_KEYS)
        if diff:
            raise RunDirError(
                f"--resume with a different config than {source} ({'; '.join(diff[:3])}); "
                "use the original preset/config or a new --out"
            )

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_payload(self, pos: dict) -> dict:
        m = self.model
        return {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "kind": "checkpoint",
            "model": m.name,
            "config": config_to_dict(self.cfg),
            "template": m.template_payload(),
            "data": self._fingerprint,
            "state": m.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "progress": {**{k: v for k, v in pos.items() if k not in ("data_rng", "accum")},
                         "accum": {c: (float(a), float(w)) for c, (a, w) in pos["accum"].items()}},
            "rng": {"global": _global_rng_states(), "model": m.rng_states(),
                    "data": json.dumps(pos["data_rng"])},
        }

    def _save_checkpoint(self, pos: dict) -> None:
        import torch

        if self.run_dir is None:
            return
        with atomic_path(self.run_dir / CHECKPOINT, suffix=".pt.tmp") as tmp:
            torch.save(self._checkpoint_payload(pos), tmp)

    def _load_checkpoint(self) -> dict:
        path = self.run_dir / CHECKPOINT
        data = read_torch_file(path, kind="checkpoint")
        if data.get("kind") != "checkpoint" or "progress" not in data:
            raise CheckpointError(f"{path}: a model file, not a training checkpoint")
        self._check_same_run(data, str(path))
        if data.get("data") != self._fingerprint:
            raise RunDirError(
                f"{path}: the checkpoint was trained on different structures; use a new --out"
            )
        m = self.model
        try:
            m.load_state_dict(data["state"])
            for name, opt in self.optimizers.items():
                opt.load_state_dict(data["optimizers"][name])
            _set_global_rng_states(data["rng"]["global"])
            m.set_rng_states(data["rng"]["model"])
            pos = dict(data["progress"])
            pos["data_rng"] = json.loads(data["rng"]["data"])
        except CheckpointError:
            raise
        except (KeyError, RuntimeError, TypeError, ValueError) as exc:
            msg = str(exc).strip().splitlines()[0][:160] if str(exc).strip() else ""
            raise CheckpointError(f"{path}: corrupted checkpoint ({msg})") from None
        return pos

    # ------------------------------------------------------------------ CSV log
    def _csv_header(self) -> str:
        return ",".join(("epoch",) + tuple(self.model.loss_columns)) + "\n"

    def _reset_csv(self, rows: int) -> None:
        """Keep the header and the first `rows` rows (those covered by the checkpoint)."""
        path = self.run_dir / LOSSES_FILE
        lines = path.read_text().splitlines(keepends=True) if path.exists() else []
        header = self._csv_header()
        body = [ln for ln in lines[1:] if ln.endswith("\n")][:rows] if lines else []
        write_text(path, header + "".join(body))

    def _append_csv(self, epoch: int, means: dict) -> None:
        if self.run_dir is None:
            return
        vals = [f"{means[col]:.8g}" for col in self.model.loss_columns]
        with open(self.run_dir / LOSSES_FILE, "a") as fh:
            fh.write(",".join([str(epoch)] + vals) + "\n")
            fh.flush()

    def _dump_samples(self, epochs_done: int) -> None:
        if self.run_dir is None or self.cfg.n_sample_dump == 0:
            return
        s = self.model.sample(self.cfg.n_sample_dump, seed=self.cfg.seed)
        self.model.write_samples(s, self.run_dir / "samples" / f"epoch_{epochs_done:06d}"
                                 f"{self.model.sample_suffix}")

    # ------------------------------------------------------------------ main loop
    def fit(self, train: StructureSet, val: StructureSet | None = None, resume: bool = False):
        with _seeded_global_rngs(self.cfg.seed):
            self._fit(train, val, resume)

    def _fit(self, train: StructureSet, val: StructureSet | None, resume: bool) -> None:
        m, cfg = self.model, self.cfg
        m.check_data(train, val)
        has_ckpt = self._check_run_dir(resume)
        self._fingerprint = m.data_fingerprint(train, val)

        m._build(train)
        self.optimizers = m.optimizers = m.make_optimizers()
        m.prepare_data(train, val)
        m.set_train_mode(True)
        data_rng = np.random.default_rng([cfg.seed, 0xDA7A])
        pos = {"epoch": 0, "batch": 0, "step": 0, "rows": 0, "elapsed": 0.0, "accum": {},
               "data_rng": data_rng.bit_generator.state}
        if has_ckpt:
            pos = self._load_checkpoint()
            if pos["epoch"] >= cfg.epochs and pos["batch"] == 0 \
                    and (self.run_dir / MODEL_FILE).exists():
                m.set_train_mode(False)  # a finished run: resuming it touches no file
                self.elapsed = pos["elapsed"]
                return
        if self.run_dir is not None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_text(self.run_dir / CONFIG_FILE,
                       yaml.safe_dump(self._expected_header(), sort_keys=False))
            self._reset_csv(pos["rows"])

        bs = cfg.batch_size
        data_rng.bit_generator.state = pos["data_rng"]
        per_epoch = math.ceil(m.epoch_size() / bs)
        total = per_epoch * cfg.epochs
        t_start = time.monotonic() - pos["elapsed"]
        last_ckpt_time, last_ckpt_step = time.monotonic(), pos["step"]

        bar_ctx = _progress_bar(self.progress, total, f"{m.name}/{m.device.type}")
        with _stop_signals() as stop, bar_ctx as bar:
            bar(pos, None)
            while pos["epoch"] < cfg.epochs:
                pos["data_rng"] = data_rng.bit_generator.state  # epoch start: redrawn on resume
                items = m.epoch_items(data_rng)
                m.start_epoch(pos["epoch"])
                while pos["batch"] < per_epoch:
                    b = pos["batch"]
                    stats = m.train_step(items[b * bs:(b + 1) * bs], b)
                    for col, (v, w) in stats.items():  # device tensors: no sync per step
                        a0, w0 = pos["accum"].get(col, (0.0, 0.0))
                        pos["accum"][col] = (a0 + _detach64(v) * w, w0 + float(w))
                    pos["batch"] += 1
                    pos["step"] += 1
                    if pos["batch"] == per_epoch:  # epoch done: log, dump, start a new one
                        means = _means(pos["accum"], m.loss_columns)
                        self._append_csv(pos["epoch"], means)
                        pos["rows"] += 1
                        pos["epoch"] += 1
                        if cfg.sample_every and pos["epoch"] % cfg.sample_every == 0:
                            self._dump_samples(pos["epoch"])
                        pos["batch"], pos["accum"] = 0, {}
                        pos["data_rng"] = data_rng.bit_generator.state
                        bar(pos, means)
                    else:
                        bar(pos, None)
                    if self.on_step is not None:
                        self.on_step(pos["step"])
                    now = time.monotonic()
                    due = (cfg.checkpoint_every and pos["step"] - last_ckpt_step
                           >= cfg.checkpoint_every) or (
                        cfg.checkpoint_minutes and now - last_ckpt_time
                        >= 60 * cfg.checkpoint_minutes)
                    if due or stop["signum"] is not None:
                        pos["elapsed"] = time.monotonic() - t_start
                        self._save_checkpoint(pos)
                        last_ckpt_time, last_ckpt_step = time.monotonic(), pos["step"]
                    if stop["signum"] is not None:
                        raise TrainingInterrupted(self.run_dir, pos["step"], stop["signum"])
                    if pos["batch"] == 0:
                        break
            pos["elapsed"] = time.monotonic() - t_start
            self._save_checkpoint(pos)
        m.set_train_mode(False)
        if self.run_dir is not None:
            m.save(self.run_dir / MODEL_FILE)
            if not cfg.sample_every or pos["epoch"] % cfg.sample_every:
                self._dump_samples(pos["epoch"])
        self.elapsed = pos["elapsed"]


def _detach64(v):
    """A step statistic as a float64 scalar tensor (kept on its device) or a float."""
    return v.detach().double() if hasattr(v, "detach") else float(v)


def _means(accum: dict, columns) -> dict[str, float]:
    """Weighted epoch averages per column (nan where a column had no weight)."""
    out = {}
    for col in columns:
        a, w = accum.get(col, (0.0, 0.0))
        out[col] = float(a) / w if w > 0 else float("nan")
    return out


@contextlib.contextmanager
def _progress_bar(progress, total: int, label: str = ""):
    """Report training through the progress convention (dismai.progress): stage
    "training <model>/<device>", done = optimiser steps; yields update(pos, means)."""
    from dismai.progress import reporter

    stage = f"training {label}"
    info = {"epoch": 0}
    with reporter(progress) as report:
        def update(pos, means):
            info["epoch"] = pos["epoch"]
            if means:  # last finished epoch's averages (first two columns)
                for k, v in list(means.items())[:2]:
                    info[k] = f"{v:.3g}"
            report(stage, pos["step"], total, **info)

        yield update
