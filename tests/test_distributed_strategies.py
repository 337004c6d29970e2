"""DDP, FSDP2 and manual averaging under torchrun (2 processes, gloo): the weights of one process.

One torchrun launch (tests/dist_strategy_worker.py) trains every case for a few optimizer steps
through ``Trainer``, each rank on its slice of the same global batches; here one process trains
the same model on the whole batches (plain step, no gradient cache) and the final weights must
agree. The cases cover each strategy's code paths: plain step and gradient cache (with unequal
local batches), CLIP and SigLIP, clipping, LiT, gradient checkpointing, evaluation on rank 0 and
(FSDP) checkpoint, crash, resume and the saved model.
"""
import importlib.util
from pathlib import Path

import pytest
import torch
from torchrun_launch import run_torchrun

from tether.config import ConfigError
from tether.train.config import load_train_config

HERE = Path(__file__).resolve().parent
WORKER = HERE / "dist_strategy_worker.py"
spec = importlib.util.spec_from_file_location("dist_strategy_worker", WORKER)
worker = importlib.util.module_from_spec(spec)
spec.loader.exec_module(worker)

needs_gloo = pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                                reason="needs torch.distributed with gloo")
pytestmark = pytest.mark.slow  # torchrun

REL = 1e-5


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("strategies")
    run_torchrun(WORKER, out, timeout=300)
    return out, torch.load(out / "results.pt", weights_only=False)


def single_process(name: str, tmp_path: Path, **kw) -> tuple[dict, dict]:
    """Final weights and record of one process training on the whole global batches."""
    from tether.train.distributed import DistributedContext
    from tether.train.trainer import Trainer
    _, _, sizes = worker.CASES.get(name, ("fsdp", None, (4, 4)))
    cfg, model = worker.build_case(name, tmp_path / name, micro_batch_size=None, **kw)
    data = worker.GlobalBatches(sizes, None, model.config.towers["text"].context_length)
    evaluate = worker.weight_sum if "eval" in name else None
    final = Trainer(cfg, model, data, evaluate=evaluate, dist=DistributedContext(), progress=False).fit()
    return model.state_dict(), final


def assert_close(got: dict, want: dict, rel: float = REL) -> None:
    assert got.keys() == want.keys()
    errors = {k: float((got[k].double() - want[k].double()).norm() / want[k].double().norm().clamp_min(1e-30))
              for k in want if want[k].is_floating_point()}
    worst = max(errors, key=errors.get)
    assert errors[worst] < rel, f"{worst}: relative error {errors[worst]:.2e}"


@needs_gloo
@pytest.mark.parametrize("name", [n for n in worker.CASES if not n.startswith("ddp-patch")])
def test_strategy_matches_one_process_on_the_whole_batch(results, tmp_path, name):
    _, res = results
    want, final = single_process(name, tmp_path)
    got = res[name]["params"]
    assert_close(got, want)
    # Training moved the weights (the comparison is not between two copies of the init).
    _, init = worker.build_case(name, tmp_path / "init")
    assert any(not torch.equal(init.state_dict()[k], want[k]) for k in want)
    if "eval" in name:  # rank 0 evaluated the gathered (full) FSDP weights
        assert res[name]["final"]["weight_sum"] == pytest.approx(final["weight_sum"], rel=1e-6)


@needs_gloo
@pytest.mark.parametrize("name", ["ddp-patch-dropout", "ddp-patch-dropout-gradcache"])
def test_ddp_ranks_agree_with_their_own_patch_dropout(results, name):
    _, res = results
    ranks = res[name]["ranks"]
    assert len(ranks) == 2
    for key in ranks[0]:
        assert torch.equal(ranks[0][key], ranks[1][key]), key


@needs_gloo
def test_fsdp_resume_and_saved_model(results, tmp_path):
    import tether
    out, res = results
    straight, resumed = res["fsdp-resume"]["straight"], res["fsdp-resume"]["resumed"]
    assert_close(resumed, straight, rel=1e-6)  # crash after the step-2 checkpoint, resume: same end
    assert_close(res["fsdp-resume"]["crossed"], straight)  # a DDP run's checkpoint resumed with FSDP
    checkpoints = sorted(p.name for p in (out / "fsdp-resume" / "resumed" / "checkpoints").glob("step_*"))
    assert checkpoints[-1] == "step_00000004"
    want, _ = single_process("fsdp-resume", tmp_path, steps=4, checkpoint_every=2)
    assert_close(straight, want)
    loaded = tether.load(str(out / "fsdp-resume" / "model"))  # tether's format, one process
    assert_close(loaded.state_dict(), want)


def test_unknown_strategy_fails_before_training():
    with pytest.raises(ConfigError, match=r"train\.strategy: expected 'ddp', 'fsdp' or 'manual', got 'zero3'"):
        load_train_config(None, ["strategy=zero3"])
