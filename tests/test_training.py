"""Training and evaluation: a short run, exact resume after SIGKILL, DDP equals one process."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import build_toy_dataset
from safetensors.torch import load_file

from refavs.cli import main
from refavs.training.sampling import clip_groups, rank_batches

REPO = Path(__file__).resolve().parents[1]
FAST = ["batch_size=2", "log_every_steps=1", "warmup_steps=0"]


@pytest.fixture(scope="module")
def toy_with_features(tmp_path_factory):
    """The toy dataset with the tiny model's features extracted once for every test here."""
    from refavs.features.cache import extract_features
    from refavs.features.config import get_feature_config

    root = tmp_path_factory.mktemp("training") / "toy"
    build_toy_dataset(root)
    extract_features(root, get_feature_config("tiny"), progress=False)
    return root


def refavs_cmd(*args: str, nproc: int = 1) -> list[str]:
    if nproc == 1:
        return [sys.executable, "-m", "refavs", *args]
    return [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc),
            "--master-port", str(29500 + os.getpid() % 1000), "-m", "refavs", *args]


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str((run / "last").resolve() / "model.safetensors"))


def test_rank_batches_split_one_order():
    one = rank_batches(7, seed=3, epoch=1, batch_size=2)
    r0 = rank_batches(7, seed=3, epoch=1, batch_size=1, rank=0, world_size=2)
    r1 = rank_batches(7, seed=3, epoch=1, batch_size=1, rank=1, world_size=2)
    assert [a + b for a, b in zip(r0, r1)] == one          # step k sees the same clips
    assert rank_batches(7, 3, 2, 2) != one                 # another epoch, another order


def test_rank_batches_keep_the_expressions_of_a_clip_together():
    clips = ["a", "b", "a", "c", "b", "c", "d"]
    groups = clip_groups(clips)
    assert groups == [[0, 2], [1, 4], [3, 5], [6]]
    one = rank_batches(7, seed=3, epoch=1, batch_size=2, groups=groups)
    assert sorted(i for batch in one for i in batch) == [0, 1, 2, 3, 4, 5, 6, one[0][0]]  # padded by 1
    order = [i for batch in one for i in batch][:7]
    assert all(abs(order.index(g[0]) - order.index(g[1])) == 1 for g in groups if len(g) == 2)  # clips stay whole
    r0 = rank_batches(7, 3, 1, 1, rank=0, world_size=2, groups=groups)
    r1 = rank_batches(7, 3, 1, 1, rank=1, world_size=2, groups=groups)
    assert [a + b for a, b in zip(r0, r1)] == one  # step k sees the same expressions
    assert rank_batches(7, 3, 2, 2, groups=groups) != one
    with pytest.raises(ValueError, match="partition"):
        rank_batches(7, 3, 1, 2, groups=[[0, 1], [2]])


def test_rank_batches_take_a_few_expressions_of_each_clip_a_new_choice_each_epoch():
    groups = [list(range(6 * c, 6 * c + 6)) for c in range(5)] + [[30, 31]]  # 5 clips of 6, one of 2
    epochs = [rank_batches(32, seed=1, epoch=e, batch_size=3, groups=groups, per_group=3) for e in range(4)]
    for batches in epochs:
        seen = [i for b in batches for i in b]
        assert len(batches) == 6 and len(seen) == 18 and len(set(seen)) == 17  # 3 + 3 + 3 + 3 + 3 + 2, padded by 1
        for g in groups:
            taken = [i for i in seen if i in g]
            assert len(set(taken)) == min(3, len(g))
            first = seen.index(taken[0])
            assert seen[first:first + len(set(taken))] == sorted(set(taken))  # together, in order
    assert len({tuple(i for b in batches for i in b) for batches in epochs}) == 4  # another choice each epoch
    assert epochs[1] == rank_batches(32, seed=1, epoch=1, batch_size=3, groups=groups, per_group=3)  # resumable
    assert rank_batches(32, 1, 0, 3, groups=groups, per_group=6) == rank_batches(32, 1, 0, 3, groups=groups)
    with pytest.raises(ValueError, match="per_group"):
        rank_batches(32, 1, 0, 3, groups=groups, per_group=0)
    from refavs.training.config import get_train_config

    with pytest.raises(ValueError, match="needs batch_by_clip"):
        get_train_config("lite", ["batch_by_clip=false"])


def test_train_reports_an_unloadable_segmenter_checkpoint_in_one_line(toy_with_features, tmp_path, capsys):
    run = tmp_path / "run"
    status = main(["train", "--data-dir", str(toy_with_features), "--out", str(run), "max_steps=2", *FAST,
                   f"segmenter.checkpoint={tmp_path / 'absent'}"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("refavs train: error: segmenter.checkpoint=") and "no such folder" in err
    assert "Traceback" not in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("error", ["text", "download"])
def test_train_reports_encoders_that_cannot_be_loaded_in_one_line(error, toy_with_features, tmp_path, capsys,
                                                                   monkeypatch):
    from refavs.features.text import TextEncoderError
    from refavs.training import trainer

    def unavailable(*args, **kwargs):
        if error == "text":
            raise TextEncoderError("text model 'distilroberta-base': cannot load (offline)")
        raise OSError("VGGish weights: cannot download https://example.org/v.pth (offline)")

    monkeypatch.setattr(trainer, "prepare_features", unavailable)
    status = main(["train", "--data-dir", str(toy_with_features), "--out", str(tmp_path / "run"), "max_steps=2"])
    err = capsys.readouterr().err
    assert status == 1 and err.startswith("refavs train: error: ") and "offline" in err
    assert len(err.splitlines()) == 1 and not (tmp_path / "run").exists()


def test_train_eval_score_and_ablation(toy_with_features, tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", "--data-dir", str(toy_with_features), "--out", str(run), "max_steps=2", *FAST]) == 0
    assert (run / "best" / "model.safetensors").is_file() and (run / "last").is_symlink()
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    assert any("loss" in r for r in log) and any("val_J" in r for r in log)
    # a second start into the same folder is refused; resuming a finished run does nothing more
    assert main(["train", "--data-dir", str(toy_with_features), "--out", str(run), "max_steps=2", *FAST]) == 1
    assert "--resume" in capsys.readouterr().err

    splits = ["test_s", "test_u", "test_n"]
    base = ["eval", "--checkpoint", str(run / "best"), "--data-dir", str(toy_with_features), "--split", *splits,
            "--json"]
    assert main([*base, "--save-pred", str(tmp_path / "pred")]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert main(["score", "--data-dir", str(toy_with_features), "--split", *splits, "--pred-dir",
                 str(tmp_path / "pred"), "--json"]) == 0
    scored = json.loads(capsys.readouterr().out)
    for split in splits:
        for key in ("J", "F", "S"):
            assert evaluated["splits"][split][key] == pytest.approx(scored["splits"][split][key], abs=1e-12)

    from refavs.data.dataset import RefAVSDataset, collate
    from refavs.features.cache import FeatureStore
    from refavs.features.config import get_feature_config
    from refavs.models.eemc import EEMC
    from refavs.training.evaluate import ablate_batch

    config = get_feature_config("tiny")
    batch = collate([RefAVSDataset(toy_with_features, "test_s", FeatureStore.open(toy_with_features, config),
                                   image=config.image)[0]])
    model = EEMC.from_pretrained(run / "best").eval()
    with torch.no_grad():
        full = model(batch).mask_logits
        for modality in ("audio", "text", "visual"):
            assert not torch.allclose(model(ablate_batch(batch, modality)).mask_logits, full), modality


def test_resume_after_sigkill_matches_an_uninterrupted_run(toy_with_features, tmp_path):
    common = ["train", "--data-dir", str(toy_with_features), "--no-progress", "max_steps=5",
              "checkpoint_every_steps=1", "val_every_epochs=100", *FAST]
    straight = tmp_path / "straight"
    subprocess.run(refavs_cmd(*common, "--out", str(straight)), check=True, capture_output=True, cwd=REPO)

    killed = tmp_path / "killed"
    proc = subprocess.Popen(refavs_cmd(*common, "--out", str(killed)), cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        last = killed / "last"
        if last.exists() and int(last.resolve().name.split("-")[1]) >= 2:
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = int((killed / "last").resolve().name.split("-")[1])
    assert 2 <= done < 5
    resumed = subprocess.run(refavs_cmd(*common, "--out", str(killed), "--resume"), capture_output=True,
                             text=True, cwd=REPO)
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(straight), weights(killed)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


def test_two_processes_of_batch_one_equal_one_of_batch_two(toy_with_features, tmp_path):
    """gloo DDP: gradients averaged over 2 ranks of 1 clip equal those of 1 rank with 2 clips."""
    common = ["train", "--data-dir", str(toy_with_features), "--no-progress", "--device", "cpu", "max_steps=3",
              "val_every_epochs=100", "log_every_steps=1", "warmup_steps=0"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(refavs_cmd(*common, "--out", str(tmp_path / "one"), "batch_size=2"),
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert one.returncode == 0, one.stderr
    two = subprocess.run(refavs_cmd(*common, "--out", str(tmp_path / "two"), "batch_size=1", nproc=2),
                         capture_output=True, text=True, cwd=REPO, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    a, b = weights(tmp_path / "one"), weights(tmp_path / "two")
    from refavs.models.eemc import EEMC
    from refavs.models.registry import get_model_config

    torch.manual_seed(0)  # the recipe's seed: the weights both runs started from
    start = EEMC(get_model_config("tiny")).state_dict()
    keys = [k for k in a if a[k].is_floating_point()]
    update = torch.cat([(a[k] - start[k]).flatten() for k in keys])
    apart = torch.cat([(a[k] - b[k]).flatten() for k in keys])
    # Tolerance: float32 sums in another order (all-reduce vs one batched mean) change the
    # gradients at ~1e-7; Adam divides by the gradient's running size, so a parameter whose
    # gradient is ~0 can still move by ~lr either way (max gap seen 1.1e-4 at lr 5e-4). So the
    # whole update is compared: the runs' difference must be under 0.1 % of the update's norm
    # (measured: 2.5e-4 against 0.70, 0.04 %).
    assert float(update.norm()) > 1e-2   # training did change the weights, so the comparison means something
    assert float(apart.norm()) < 1e-3 * float(update.norm()), (float(apart.norm()), float(update.norm()))
    assert float(apart.abs().max()) < 5e-4   # and no parameter is off by more than one step's lr


def test_build_optimizer_is_fused_adamw_with_the_loops_results():
    from refavs.training.config import TrainConfig
    from refavs.training.trainer import build_optimizer

    cfg = TrainConfig(lr=1e-2, weight_decay=0.1)
    torch.manual_seed(0)
    a = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    b = [torch.nn.Parameter(p.detach().clone()) for p in a]
    start = [p.detach().clone() for p in a]
    fused = build_optimizer(a, cfg)
    loop = torch.optim.AdamW(b, lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay, foreach=False)
    assert fused.defaults["fused"] is True
    for step in range(3):
        for params, opt in ((a, fused), (b, loop)):
            opt.zero_grad()
            sum(((p * (step + 1)) ** 2).sum() for p in params).backward()
            opt.step()
    for p, q, p0 in zip(a, b, start):
        assert float((p - p0).detach().abs().min()) > 1e-3   # every weight moved
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_expression_signal_diagnostic(toy_with_features, capsys):
    """benchmarks/expression_signal.py: per-stage differences between two expressions of one clip."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("expression_signal", REPO / "benchmarks" / "expression_signal.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.relative_difference(torch.tensor([3.0, 4.0]), torch.tensor([3.0, 4.0])) == 0.0
    assert module.relative_difference(torch.tensor([0.0, 2.0]), torch.tensor([2.0, 0.0])) == pytest.approx(2 ** 0.5)

    assert module.main(["--data-dir", str(toy_with_features), "--pairs", "1"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["pairs"] == 1 and list(result["stages"]) == list(module.STAGES)
    assert result["stages"]["text_proj"] > 0.1            # two different sentences
    assert all(v >= 0 for v in result["stages"].values())
    with pytest.raises(SystemExit):                      # test_n has one expression per clip: no pair
        module.main(["--data-dir", str(toy_with_features), "--split", "test_n"])


def test_twin_ambiguous_rows_can_be_left_out_of_training_on_synth_only(tmp_path):
    from refavs.data.labels import label_source_for
    from refavs.data.metadata import read_metadata
    from refavs.synth.generate import generate
    from refavs.synth.layout import read_scenes
    from refavs.synth.presets import PRESETS
    from refavs.synth.stats import twin_ambiguous
    from refavs.training.config import get_train_config
    from refavs.training.trainer import training_rows

    data = tmp_path / "synth"
    generate(data, seed=2, preset=PRESETS["small"].with_counts(train=40, val=0, test_s=0, test_u=0, test_n=0),
             workers=1)
    rows = read_metadata(data, ["train"])
    twins = {e["uid"] for s in read_scenes(data) for e in s["expressions"] if twin_ambiguous(s, e)}
    assert twins and len(twins) < len(rows)
    logs: list[str] = []
    on = get_train_config("lite")
    assert on.drop_twin_ambiguous  # the lite recipe's
    kept = training_rows(data, on, label_source_for(data), logs.append)
    assert [r.uid for r in kept] == [r.uid for r in rows if r.uid not in twins]
    assert f"{len(twins)} twin-ambiguous" in logs[0]
    off = get_train_config("lite", ["drop_twin_ambiguous=false"])
    assert training_rows(data, off, label_source_for(data), logs.append) == rows
    toy = tmp_path / "toy"
    build_toy_dataset(toy)
    assert label_source_for(toy) is None                 # the real layout: no label source
    assert training_rows(toy, on, None, logs.append) == read_metadata(toy, ["train"])
    assert "ignored" in logs[-1]


def test_a_step_saved_again_never_replaces_the_checkpoint_last_points_at(tmp_path, monkeypatch):
    """The second save of one step (after its validation) goes to a new folder: a kill while it is
    written leaves ``last`` on the first, complete one (it used to be deleted before the rename)."""
    from refavs.models.build import build_model
    from refavs.models.registry import get_model_config
    from refavs.training import checkpoint as ckpt

    model = build_model(get_model_config("lite", ["head.dim=32", "head.fine_dim=16", "backbone.image_size=64"]),
                        load_pretrained=False)
    first = ckpt.save_checkpoint(tmp_path, model, {"global_step": 2, "best_J": None})
    assert first.name == "step-00000002" and ckpt.last_checkpoint(tmp_path) == first

    real_replace = os.replace

    def killed(src, dst):  # as if the process died as the new folder was to be put in place
        if Path(dst).name.startswith("step-"):
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(ckpt.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(tmp_path, model, {"global_step": 2, "best_J": 0.5}, best=True)
    monkeypatch.undo()
    assert ckpt.last_checkpoint(tmp_path) == first and ckpt.load_state(first)["best_J"] is None
    again = ckpt.save_checkpoint(tmp_path, model, {"global_step": 2, "best_J": 0.5}, best=True)
    assert again.name == "step-00000002-1" and ckpt.load_state(again)["best_J"] == 0.5
    assert ckpt.last_checkpoint(tmp_path) == again == (tmp_path / "best").resolve()
    later = ckpt.save_checkpoint(tmp_path, model, {"global_step": 3, "best_J": 0.5}, keep=1)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-00000002-1", "step-00000003"]
    assert ckpt.last_checkpoint(tmp_path) == later  # the oldest went; best's stays


def test_checkpoints_of_one_step_sort_in_the_order_written():
    """``step-N-10`` comes after ``step-N-9`` (a name sort would put it before ``-2``), so pruning
    removes the oldest."""
    from refavs.training.checkpoint import _written_order

    names = ["step-00000003", "step-00000002-10", "step-00000002-9", "step-00000002", "step-00000002-2"]
    ordered = sorted((Path(n) for n in names), key=_written_order)
    assert [p.name for p in ordered] == ["step-00000002", "step-00000002-2", "step-00000002-9",
                                         "step-00000002-10", "step-00000003"]


def test_auto_precision_is_bf16_only_where_the_cpu_has_it_natively(monkeypatch):
    """``mixed_precision=auto``: bf16 on a CPU with native bf16 kernels, float32 on one without
    (emulated bf16 would be slower there); explicit settings pass through."""
    from refavs.training import evaluate as ev
    from refavs.training.config import get_train_config

    cpu = torch.device("cpu")
    assert get_train_config("lite", ["mixed_precision=auto"]).mixed_precision == "auto"
    for explicit in ("no", "bf16"):
        assert ev.resolve_precision(explicit, cpu) == explicit
    monkeypatch.setattr(ev, "_cpu_has_native_bf16", lambda: False)
    assert ev.resolve_precision("auto", cpu) == "no"
    with ev.autocast(cpu, "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    monkeypatch.setattr(ev, "_cpu_has_native_bf16", lambda: True)
    assert ev.resolve_precision("auto", cpu) == "bf16"
    with ev.autocast(cpu, "auto"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16


class WritesAMarker:
    """Unpickled, it opens (creates) ``path``: the stand-in for any code a pickle can run."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return open, (str(self.path), "w")


def same(a, b) -> bool:
    """Equal values of equal types, tensors and numpy arrays included (dtype, shape and every bit)."""
    import numpy as np

    if type(a) is not type(b):
        return False
    if isinstance(a, torch.Tensor):
        return a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b or (a != a and b != b)  # NaN


def test_the_trainer_state_round_trips_through_json_and_safetensors_without_pickle(tmp_path, monkeypatch):
    import pickle
    import random

    import numpy as np

    from refavs.training import checkpoint as ckpt
    from refavs.training.config import TrainConfig
    from refavs.training.trainer import build_optimizer, lr_factor

    cfg = TrainConfig(lr=1e-2, warmup_steps=2)
    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(5, 3)), torch.nn.Parameter(torch.randn(7))]
    optimizer = build_optimizer(params, cfg)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, 10, cfg))
    scaler = torch.amp.GradScaler("cpu", enabled=True)

    def step():
        optimizer.zero_grad()
        sum((p ** 2).sum() for p in params).backward()
        optimizer.step()
        scheduler.step()

    step()
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
             "rng": [ckpt.rng_state(), ckpt.rng_state()], "epoch": 1, "step_in_epoch": 3, "global_step": 7,
             "best_J": 0.1 + 0.2, "odd": {"__tensor__": [1, 2], 3: (None, float("nan"))}}
    ckpt.write_state(tmp_path, state)
    assert sorted(p.name for p in tmp_path.iterdir()) == [ckpt.STATE_FILE, ckpt.STATE_TENSORS_FILE]
    document = json.loads((tmp_path / ckpt.STATE_FILE).read_text())
    assert document["format"] == ckpt.STATE_FORMAT and document["state"]["global_step"] == 7

    def no_pickle(*args, **kwargs):
        raise AssertionError("the trainer state was unpickled")

    monkeypatch.setattr(torch, "load", no_pickle)
    monkeypatch.setattr(pickle, "load", no_pickle)
    monkeypatch.setattr(pickle, "loads", no_pickle)
    loaded = ckpt.load_state(tmp_path)
    monkeypatch.undo()
    assert same(loaded, state)

    at_snapshot = [p.detach().clone() for p in params]
    step()  # the run as it goes on ...
    expected = [p.detach().clone() for p in params]
    with torch.no_grad():  # ... and as it goes on after a resume from the loaded state
        for p, q in zip(params, at_snapshot):
            p.copy_(q)
    optimizer.load_state_dict(loaded["optimizer"])
    scheduler.load_state_dict(loaded["scheduler"])
    step()
    assert all(torch.equal(p, q) for p, q in zip(params, expected))

    def draws():
        return random.random(), float(np.random.rand()), torch.rand(3).tolist()

    ckpt.set_rng_state(state["rng"][1])
    first = draws()
    ckpt.set_rng_state(loaded["rng"][1])
    assert draws() == first


def test_resume_refuses_a_pickled_trainer_state_and_runs_none_of_it(toy_with_features, tmp_path, capsys):
    from refavs.training import checkpoint as ckpt

    run = tmp_path / "run"
    args = ["train", "--data-dir", str(toy_with_features), "--out", str(run), "--no-progress", "max_steps=2",
            "val_every_epochs=100", *FAST]
    assert main(args) == 0
    last = (run / "last").resolve()
    state = ckpt.load_state(last)
    marker = tmp_path / "pickle-ran"

    # a state file of the new format that is a pickle instead: read as data, refused, never unpickled
    tensors = last / ckpt.STATE_TENSORS_FILE
    saved = tensors.read_bytes()
    torch.save({"optimizer": WritesAMarker(marker)}, tensors)
    capsys.readouterr()
    assert main([*args, "--resume"]) == 1
    err = capsys.readouterr().err
    assert str(last / ckpt.STATE_FILE) in err and "unreadable" in err and not marker.exists()
    tensors.write_bytes(saved)

    # an older run folder: trainer_state.pt only, here one whose pickle would create the marker
    (last / ckpt.STATE_FILE).unlink()
    tensors.unlink()
    old = last / ckpt.OLD_STATE_FILE
    torch.save({**state, "optimizer": WritesAMarker(marker)}, old)
    assert main([*args, "--resume"]) == 1
    err = capsys.readouterr().err
    assert str(old) in err and "pickle" in err and ckpt.TRUST_OLD_STATE_OPTION in err and len(err.splitlines()) == 1
    assert not marker.exists()
    assert not (last / ckpt.STATE_FILE).exists()

    # converting it is for folders the user vouches for, and only with --resume
    assert main([*args, ckpt.TRUST_OLD_STATE_OPTION]) == 2
    torch.save(state, old)  # the state as an older version wrote it
    assert main([*args, "--resume", ckpt.TRUST_OLD_STATE_OPTION]) == 0
    assert "converted" in capsys.readouterr().err
    assert old.is_file() and same(ckpt.load_state(last), state)
    assert main([*args, "--resume"]) == 0  # once converted, resuming needs no option


def test_a_full_disk_names_the_checkpoint_the_space_and_the_intact_last_one(tmp_path, monkeypatch):
    """A failed checkpoint write (ENOSPC here) says where, how much is free and needed, and what is
    kept: RUN/last still points at the previous complete checkpoint, and no partial folder is left."""
    import errno

    from refavs.training import checkpoint as ckpt

    class Config:
        def to_dict(self):
            return {"name": "toy"}

    model = torch.nn.Linear(4, 3)
    model.config = Config()
    state = {"epoch": 0, "step_in_epoch": 1, "global_step": 1, "best_J": None}
    first = ckpt.save_checkpoint(tmp_path, model, state)

    def full_disk(folder, state):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(ckpt, "write_state", full_disk)
    with pytest.raises(ckpt.CheckpointWriteError) as caught:
        ckpt.save_checkpoint(tmp_path, model, {**state, "global_step": 2})
    message = str(caught.value)
    assert caught.value.errno == errno.ENOSPC and isinstance(caught.value, OSError)
    assert "step-00000002: could not write the checkpoint (No space left on device)" in message
    assert "MiB free on the disk of" in message and "a checkpoint of this run takes" in message
    assert f"{first}, is intact" in message and "\n" not in message
    assert (tmp_path / "last").resolve() == first
    assert sorted(p.name for p in (tmp_path / ckpt.CHECKPOINTS).iterdir()) == [first.name]  # nothing partial
