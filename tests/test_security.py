"""Security: no code runs from a file in a run folder (issue 16 item 1), and the config refuses values that
would only fail later or silently (item 4, the config-only parts)."""
from __future__ import annotations

import json
import os
import pickle
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from tracer_core.cli import main as cli_main
from tracer_core.config import ConfigError, RunConfig, load_preset
from tracer_core.models.checkpoint_io import CheckpointError
from tracer_core.store.writer import RunWriter
from tracer_core.training.checkpoint import FORMAT_VERSION, load_checkpoint, save_checkpoint


class _Payload:
    """Unpickling this object calls ``exec``, which writes the marker file: the probe's attack."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('pwned')",)


def _plant(run_dir: Path, marker: Path) -> dict[str, Path]:
    """Three hostile files in the run's checkpoints folder: a raw pickle, a torch.save zip and a raw pickle
    named like a safe file; each would create ``marker`` if anything unpickled it."""
    ck = run_dir / "checkpoints"
    ck.mkdir(parents=True, exist_ok=True)
    evil = {"format_version": 1, "config": {}, "student": _Payload(marker)}
    files = {"pickle": ck / "step_000001.pt", "torch_zip": ck / "step_000002.pt",
             "disguised": ck / "step_000003.safetensors"}
    files["pickle"].write_bytes(pickle.dumps(evil, protocol=2))
    torch.save(evil, files["torch_zip"])
    files["disguised"].write_bytes(pickle.dumps(evil, protocol=4))
    assert zipfile.is_zipfile(files["torch_zip"])
    return files


def _loaders():
    from tracer_core import api
    from tracer_core.analysis.checkpoints import load_checkpoint_bundle, load_models_from_checkpoint
    from tracer_core.models import build_model
    return {
        "load_checkpoint": load_checkpoint,
        "load_checkpoint_bundle": load_checkpoint_bundle,
        "load_models_from_checkpoint": load_models_from_checkpoint,
        "api.load_checkpoint_models": api.load_checkpoint_models,
        "model.pretrained": lambda p: build_model(load_preset("flyp", [f"model.pretrained={p}"]).model),
    }


def test_a_planted_malicious_checkpoint_runs_no_code_in_any_loader(tmp_path, capsys):
    data_dir, marker = tmp_path / "store", tmp_path / "MARKER"
    with RunWriter.create(RunConfig(name="shared", method="ft"), data_dir) as w:
        files = _plant(w.run_dir, marker)
        for p in files.values():
            w.on_checkpoint(1, str(p))              # recorded as artifacts, as the pages list them
    before = sorted((p.name, p.stat().st_size) for p in w.run_dir.rglob("*"))
    for name, load in _loaders().items():
        for kind, path in files.items():
            with pytest.raises(CheckpointError) as err:
                load(path)
            msg = str(err.value)
            assert not marker.exists(), f"{name} ran code from the {kind} file"
            assert str(path) in msg, (name, kind, msg)
            if name != "model.pretrained":       # the training-checkpoint loaders say how to convert
                assert "old-format checkpoint" in msg and "can run code" in msg, (name, kind, msg)
                assert "python -m tracer_core convert-checkpoint" in msg
            else:                                # weights: PyTorch's restricted loader refuses the pickle
                assert "cannot read checkpoint" in msg
    # the conversion command refuses them too, without unpickling, and writes nothing
    for path in files.values():
        assert cli_main(["convert-checkpoint", str(path), str(tmp_path / "new.safetensors")]) == 2
        assert not marker.exists() and not (tmp_path / "new.safetensors").exists()
    assert "would need arbitrary unpickling" in capsys.readouterr().err
    assert sorted((p.name, p.stat().st_size) for p in w.run_dir.rglob("*")) == before


class _Student(nn.Module):
    def __init__(self):
        super().__init__()
        self.clip = nn.Linear(3, 2)


class _Method:
    def __init__(self):
        self.head = nn.Linear(2, 4)

    def state_dict(self):
        return {"extra0": self.head.state_dict()}


def _trained():
    torch.manual_seed(0)
    student, method = _Student(), _Method()
    opt = torch.optim.AdamW(list(student.parameters()) + list(method.head.parameters()), lr=1e-2)
    student.clip(torch.randn(5, 3)).sum().backward()
    opt.step()
    return student, method, opt


def test_checkpoint_round_trip_keeps_tensors_counters_and_optimizer_state(tmp_path):
    student, method, opt = _trained()
    cfg = {"name": "x", "optim": {"lr": 1e-2}, "nan_ok": float("nan")}
    path = save_checkpoint(tmp_path / "c.safetensors", student=student, teacher=None, method=method,
                           optimizer=opt, step=7, config=cfg)
    state = load_checkpoint(path)
    assert state["format_version"] == FORMAT_VERSION and state["step"] == 7 and state["teacher"] is None
    assert state["config"]["optim"] == {"lr": 1e-2}
    for k, v in student.clip.state_dict().items():
        assert torch.equal(state["student"][k], v)
    assert torch.equal(state["method"]["extra0"]["weight"], method.head.weight)
    fresh = torch.optim.AdamW(list(_Student().parameters()) + list(nn.Linear(2, 4).parameters()), lr=1.0)
    fresh.load_state_dict(state["optimizer"])      # int-keyed state and the betas tuple survive JSON
    assert fresh.state_dict()["param_groups"][0]["lr"] == 1e-2
    assert torch.equal(fresh.state_dict()["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    assert not list(tmp_path.glob("*.tmp"))


def test_old_checkpoint_is_refused_then_converted_by_the_command(tmp_path, capsys):
    student, method, opt = _trained()
    old = tmp_path / "step_000005.pt"               # what the previous version wrote (torch.save, format 1)
    torch.save({"format_version": 1, "step": 5, "config": {"name": "old"}, "student": student.clip.state_dict(),
                "teacher": None, "method": method.state_dict(), "optimizer": None}, old)
    with pytest.raises(CheckpointError, match="convert-checkpoint .*step_000005.pt .*step_000005.safetensors"):
        load_checkpoint(old)
    new = tmp_path / "step_000005.safetensors"
    assert cli_main(["convert-checkpoint", str(old), str(new)]) == 0
    assert "converted" in capsys.readouterr().out
    state = load_checkpoint(new)
    assert state["step"] == 5 and torch.equal(state["student"]["weight"], student.clip.weight)
    assert cli_main(["convert-checkpoint", str(old), str(new)]) == 2      # never overwrites
    assert "exists already" in capsys.readouterr().err


def test_foreign_and_crafted_safetensors_give_clear_messages(tmp_path):
    from safetensors.torch import save_file
    weights = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(weights))
    with pytest.raises(CheckpointError, match="not a TRACER Studio training checkpoint.*model.pretrained"):
        load_checkpoint(weights)
    crafted = tmp_path / "crafted.safetensors"   # right magic, but the config is not a dict
    save_file({"student/w": torch.zeros(2)}, str(crafted), metadata={"tracer_checkpoint": json.dumps(
        {"format_version": FORMAT_VERSION, "step": 1, "config": "x", "student": {"w": {"__tensor__": "student/w"}},
         "teacher": None, "method": {}, "optimizer": None})})
    with pytest.raises(CheckpointError, match="crafted.safetensors: corrupt checkpoint.*config"):
        load_checkpoint(crafted)
    dangling = tmp_path / "dangling.safetensors"
    save_file({"a": torch.zeros(1)}, str(dangling), metadata={"tracer_checkpoint": json.dumps(
        {"format_version": FORMAT_VERSION, "student": {"w": {"__tensor__": "nope"}}})})
    with pytest.raises(CheckpointError, match="dangling.safetensors: corrupt checkpoint metadata"):
        load_checkpoint(dangling)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(os.urandom(64).replace(b"\x80", b"\x00").replace(b"PK", b"pk"))
    with pytest.raises(CheckpointError, match="garbage.safetensors"):
        load_checkpoint(garbage)


def test_a_safetensors_header_length_starting_with_0x80_is_not_taken_for_a_pickle(tmp_path):
    """Regression: a checkpoint whose header is 128 + 256k bytes long starts with b'\\x80' (pickle's PROTO byte)."""
    import json as _json
    import struct

    from tracer_core.models.checkpoint_io import sniff_format
    header = _json.dumps({"__metadata__": {"k": "v"}}).encode()
    header += b" " * (128 + 256 - len(header))                 # length 384 = 0x0180: first byte 0x80
    path = tmp_path / "c.safetensors"
    path.write_bytes(struct.pack("<Q", len(header)) + header)
    assert path.read_bytes()[:1] == b"\x80"
    assert sniff_format(path) == "safetensors"
    pickled = tmp_path / "p.bin"
    pickled.write_bytes(b"\x80\x04\x95" + b"\x00" * 16)
    assert sniff_format(pickled) == "pickle"
