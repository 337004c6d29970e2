"""Training throughput and accuracy: tether vs OpenCLIP, same tiny CLIP, same data, same steps.

The issue's peer requirement: the ``tiny-vit-28`` configuration trained from scratch on
Fashion-MNIST by tether and by OpenCLIP (open_clip_torch 3.3.0 with torch 2.14.1 and
torchvision 0.29.1, in ``bench/.venv-openclip``) on identical batches for the same number of
steps; tether should be within 1 point of OpenCLIP's zero-shot top-1 (or better) and reach at
least 1.2x its training samples/s.

    python bench/bench_train_vs_open_clip.py                         # both losses, 1500 steps of 256
    python bench/bench_train_vs_open_clip.py --loss clip --steps 300 # quick look
    python bench/bench_train_vs_open_clip.py --tether-python bench/.venv-openclip/bin/python
        # control: tether on the peer's torch 2.14.1 as well (tether imported from src/)
    python bench/bench_train_vs_open_clip.py --loss siglip --tether-decay-split open_clip
        # control: tether's model with OpenCLIP's weight-decay split (it also decays embeddings)
    python bench/bench_train_vs_open_clip.py --loss siglip --tether-init open_clip
        # control: tether starts from OpenCLIP's initial weights for the seed (--peer-init tether:
        # the reverse, OpenCLIP starts from tether's)

What happens, per loss:

1. Inputs, made once here and written to a temporary ``.npz`` that both sides read: the
   Fashion-MNIST train/test arrays (``tether.data.fashion_mnist_arrays``); a byte-level BPE
   (``tether.tokenizer.Tokenizer.train_bpe``, vocabulary 1024 at most, as ``tether demo``) trained
   on TRAIN_TEMPLATES x class names; for every step the image indices (epoch permutations from
   ``tether.data.epoch_permutation``, full batches, a fresh template per image and epoch) and the
   caption token ids; the zero-shot prompt ids for HELDOUT_TEMPLATES (filled as
   ``ZeroShotClassifier.build`` fills them). Both models therefore see the same ids.
2. Two worker processes, each with ``torch.set_num_threads(2)``: tether (this file,
   ``--tether-worker``) and OpenCLIP (``bench/open_clip_train_peer.py`` in the venv). Same
   architecture (tether's ``tiny-vit-28`` with ``text.vocab_size`` set to the tokenizer's; the
   OpenCLIP ``CLIP`` built from the same numbers, text pooled at the tokenizer's end-of-text id
   with ``pool_type='eos'``), same init seed, each library drawing its own initial weights (since
   2026-11-29 from the same distributions: tether's default init is OpenCLIP's), AdamW with
   each library's own decay/no-decay split, linear warmup then cosine, grad-norm clip 1.0,
   logit-scale clamp to log(100). tether's step is ``tether.train.gradcache.contrastive_step``
   with ``tether.losses.clip_loss``/``siglip_loss``, ``tether.train.optim.build_optimizer``,
   ``tether.train.schedule.lr_at`` and ``clamp_logit_scale_`` exactly as ``Trainer._train_step``
   composes them; OpenCLIP's mirrors ``open_clip_train``'s ``train_one_epoch``.
3. Timing: the workers take turns in windows of ``--window`` steps (ABBA order: T O O T T O ...),
   so only one computes at a time and both see the same background load over the run. Only the
   optimizer steps are timed (building each batch's tensors from the arrays is not). Reported:
   the median of the per-window samples/s, the whole-run samples/s (sum of step times), and the
   median of the per-window-pair ratios; the load average before, during and after.
4. Zero-shot top-1 on the 10,000 test images with the held-out prompt ensemble (normalise each
   prompt embedding, average per class, renormalise; cosine argmax), tether via
   ``tether.metrics.ZeroShotClassifier``, OpenCLIP with the same arithmetic.

SigLIP: both models get SigLIP's temperature/bias init (scale 10, bias -10; ``--siglip-init``);
``tiny-vit-28`` has no logit bias of its own.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
VENV_PYTHON = REPO / "bench" / ".venv-openclip" / "bin" / "python"
PEER = REPO / "bench" / "open_clip_train_peer.py"
MODEL = "tiny-vit-28"
TOKENIZER_VOCAB = 1024  # tether demo's tokenizer={"train_vocab_size": 1024}


# ---------------------------------------------------------------------------------------------- inputs

def prepare_inputs(path: Path, args, loss: str) -> dict:
    """Write the .npz both workers read; returns its config."""
    from tether import get_model_config
    from tether.data import (FASHION_MNIST_CLASSES, HELDOUT_TEMPLATES, TRAIN_TEMPLATES, epoch_permutation,
                             fashion_mnist_arrays, format_caption)
    from tether.metrics.templates import fill_template
    from tether.tokenizer import Tokenizer
    from tether.train.config import OptimConfig

    mc = get_model_config(MODEL)
    v, t = mc.towers["image"], mc.towers["text"]
    if v.kind != "vit" or t.kind != "transformer" or v.pool != "cls" or not t.causal or t.pool != "eot":
        raise SystemExit(f"{MODEL} changed shape (vision {v.kind}/{v.pool}, text {t.kind}/{t.pool}); "
                         "update the OpenCLIP mapping in this script")
    if v.act != t.act or v.act not in ("gelu", "quick_gelu"):
        raise SystemExit(f"{MODEL}: activations {v.act}/{t.act} have no OpenCLIP quick_gelu equivalent")
    classes = list(FASHION_MNIST_CLASSES)
    corpus = [format_caption(tpl, c) for tpl in TRAIN_TEMPLATES for c in classes]  # row = template * C + class
    tok = Tokenizer.train_bpe(corpus, vocab_size=min(TOKENIZER_VOCAB, t.vocab_size),
                              context_length=t.context_length, min_frequency=1)
    if tok.eos_id != t.eot_token_id:
        raise SystemExit(f"tokenizer eos id {tok.eos_id} != {MODEL}'s text.eot_token_id {t.eot_token_id}")
    vocab = tok.backend.get_vocab_size()
    caption_ids = tok(corpus).numpy().astype(np.int32)

    train_x, train_y = fashion_mnist_arrays("train")
    test_x, test_y = fashion_mnist_arrays("test")
    n, b, steps = len(train_x), args.batch_size, args.steps
    per_epoch = n // b
    indices = np.empty((steps, b), dtype=np.int32)
    ids = np.empty((steps, b, t.context_length), dtype=np.int32)
    for epoch in range(math.ceil(steps / per_epoch)):
        perm = epoch_permutation(n, args.seed, epoch)
        template = np.random.default_rng([args.seed, epoch, 0x7E]).integers(len(TRAIN_TEMPLATES), size=n)
        for pos in range(min(per_epoch, steps - epoch * per_epoch)):
            idx = perm[pos * b:(pos + 1) * b]
            indices[epoch * per_epoch + pos] = idx
            ids[epoch * per_epoch + pos] = caption_ids[template[idx] * len(classes) + train_y[idx]]

    prompts = [fill_template(tpl, c) for c in classes for tpl in HELDOUT_TEMPLATES]  # class-major
    prompt_ids = tok(prompts).numpy().astype(np.int32).reshape(len(classes), len(HELDOUT_TEMPLATES), -1)
    optim = OptimConfig()
    scale_init, bias_init = (args.siglip_init if loss == "siglip" else (mc.logit_scale_init, mc.logit_bias_init))
    cfg = {
        "loss": loss, "steps": steps, "batch_size": b, "lr": args.lr, "weight_decay": args.weight_decay,
        "tether_decay_split": args.tether_decay_split,
        "tether_init_state": str(path.parent / "open_clip_init.pt") if args.tether_init == "open_clip" else None,
        "peer_init_state": str(path.parent / "tether_init.pt") if args.peer_init == "tether" else None,
        "warmup": args.warmup, "betas": list(optim.betas), "eps": optim.eps, "grad_clip": optim.grad_clip,
        "seed": args.seed, "threads": args.threads, "logit_scale_init": scale_init, "logit_bias_init": bias_init,
        "mean": list(v.processor["mean"]), "std": list(v.processor["std"]), "classes": classes,
        "prompts": prompts, "heldout_templates": list(HELDOUT_TEMPLATES),
        "model": {"name": MODEL, "embed_dim": mc.embed_dim, "image_size": v.image_size, "patch_size": v.patch_size,
                  "vision_width": v.width, "vision_layers": v.layers, "vision_heads": v.heads,
                  "vision_mlp_ratio": (v.mlp_dim or 4 * v.width) / v.width, "quick_gelu": v.act == "quick_gelu",
                  "context_length": t.context_length, "vocab_size": vocab, "text_width": t.width,
                  "text_heads": t.heads, "text_layers": t.layers,
                  "text_mlp_ratio": (t.mlp_dim or 4 * t.width) / t.width,
                  "eos_id": tok.eos_id, "pad_id": tok.pad_id},
    }
    np.savez(path, config=np.array(json.dumps(cfg)), train_images=np.ascontiguousarray(train_x),
             batch_indices=indices, batch_ids=ids, test_images=np.ascontiguousarray(test_x),
             test_labels=np.asarray(test_y, dtype=np.int64), prompt_ids=prompt_ids)
    return cfg


# ---------------------------------------------------------------------------------------------- tether worker

def open_clip_style_optimizer(model, cfg: dict):
    """AdamW with open_clip_train's split (no decay where ndim < 2 or the name has bn/ln/bias/logit_scale)."""
    import torch
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    plain = [p for n, p in named if p.ndim < 2 or any(k in n for k in ("bn", "ln", "bias", "logit_scale"))]
    decayed = [p for n, p in named if not (p.ndim < 2 or any(k in n for k in ("bn", "ln", "bias", "logit_scale")))]
    return torch.optim.AdamW([{"params": decayed, "weight_decay": cfg["weight_decay"]},
                              {"params": plain, "weight_decay": 0.0}],
                             lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])


def build_tether_model(cfg: dict):
    """tether's model for the config, initialised under the seed (or from OpenCLIP's initial weights)."""
    import torch
    from tether import create_model, get_model_config
    mc = get_model_config(cfg["model"]["name"], logit_scale_init=cfg["logit_scale_init"],
                          logit_bias_init=cfg["logit_bias_init"])
    mc.towers["text"].vocab_size = cfg["model"]["vocab_size"]
    torch.manual_seed(cfg["seed"])
    model = create_model(mc)
    if cfg.get("tether_init_state"):  # control: OpenCLIP's init, renamed by tether's checkpoint loader
        from tether.checkpoints.open_clip import _load_state
        from tether.checkpoints.open_clip_layout import canonical
        source = cfg["tether_init_state"]
        state, _ = canonical(torch.load(source, map_location="cpu", weights_only=True), source)
        _load_state(model, state, model.config, source)
    return model


def dump_tether_init(data_path: str, out: str) -> None:
    """Save tether's seeded initial weights under OpenCLIP's names (for --peer-init tether)."""
    import torch
    from tether.checkpoints.open_clip import open_clip_state
    cfg = json.loads(str(np.load(data_path)["config"]))
    torch.save(open_clip_state(build_tether_model(cfg)), out)


class TetherWorker:
    """tether's side: the same pieces Trainer._train_step composes, on the prepared batches."""

    def __init__(self, data_path: str) -> None:
        import torch
        from tether.train.optim import build_optimizer
        started = time.perf_counter()
        d = np.load(data_path)
        self.cfg = cfg = json.loads(str(d["config"]))
        torch.set_num_threads(cfg["threads"])
        self.train_images, self.batch_indices, self.batch_ids = d["train_images"], d["batch_indices"], d["batch_ids"]
        self.test_images, self.test_labels, self.prompt_ids = d["test_images"], d["test_labels"], d["prompt_ids"]
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        self.model = build_tether_model(cfg)
        if cfg["tether_decay_split"] == "open_clip":  # control: OpenCLIP's rule also decays the embeddings
            self.optimizer = open_clip_style_optimizer(self.model, cfg)
        else:
            self.optimizer = build_optimizer(self.model, cfg["lr"], cfg["weight_decay"], tuple(cfg["betas"]), cfg["eps"])
        from tether import losses
        if cfg["loss"] == "clip":
            self.loss_fn = lambda img, txt, scale, bias: losses.clip_loss(img, txt, scale)
        else:
            self.loss_fn = lambda img, txt, scale, bias: losses.siglip_loss(img, txt, scale, bias)
        self.step = 0
        self.setup_seconds = time.perf_counter() - started

    def info(self) -> dict:
        import torch

        import tether
        groups = self.optimizer.param_groups
        return {"event": "ready", "library": "tether", "tether": tether.__version__, "torch": torch.__version__,
                "threads": torch.get_num_threads(), "params": sum(p.numel() for p in self.model.parameters()),
                "decay_params": sum(p.numel() for p in groups[0]["params"]),
                "no_decay_params": sum(p.numel() for p in groups[1]["params"]) if len(groups) > 1 else 0,
                "setup_seconds": self.setup_seconds}

    def pixels(self, images_u8):
        import torch
        x = torch.from_numpy(np.ascontiguousarray(images_u8)).to(torch.float32).div(255.0)
        x = x.unsqueeze(1).expand(-1, 3, -1, -1)
        return ((x - self.mean) / self.std).contiguous()

    def train(self, k: int) -> dict:
        import torch
        from tether.train.gradcache import contrastive_step
        from tether.train.schedule import lr_at
        cfg, model, opt = self.cfg, self.model, self.optimizer
        times, loss_value = [], float("nan")
        for _ in range(k):
            if self.step >= cfg["steps"]:
                break
            pixels = self.pixels(self.train_images[self.batch_indices[self.step]])
            ids = torch.from_numpy(self.batch_ids[self.step].astype(np.int64))
            t0 = time.perf_counter()
            lr = lr_at(self.step, cfg["lr"], cfg["warmup"], cfg["steps"], 0.0)
            for group in opt.param_groups:
                group["lr"] = lr
            model.train()
            loss = contrastive_step(model, pixels, ids, self.loss_fn)
            if cfg["grad_clip"]:
                params = [p for p in model.parameters() if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, cfg["grad_clip"])
            opt.step()
            opt.zero_grad(set_to_none=True)
            model.clamp_logit_scale_()
            loss_value = float(loss)
            times.append(time.perf_counter() - t0)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"tether loss became {loss_value} at step {self.step}")
            self.step += 1
        return {"event": "trained", "step": self.step, "step_seconds": times, "loss": loss_value,
                "scale": model.scale().item()}

    def evaluate(self) -> dict:
        import torch
        from tether.metrics.zeroshot import ZeroShotClassifier
        started = time.perf_counter()
        cfg, model = self.cfg, self.model.eval()
        c, t, length = self.prompt_ids.shape
        with torch.inference_mode():
            emb = model.encode_text(torch.from_numpy(self.prompt_ids.reshape(c * t, length).astype(np.int64)),
                                    normalize=True)
            row = {p: i for i, p in enumerate(cfg["prompts"])}
            clf = ZeroShotClassifier.build(lambda prompts: emb[[row[p] for p in prompts]], cfg["classes"],
                                           cfg["heldout_templates"])
            images = torch.cat([model.encode_image(self.pixels(self.test_images[s:s + 1000]), normalize=True)
                                for s in range(0, len(self.test_images), 1000)])
        result = clf.evaluate(images, torch.from_numpy(self.test_labels))
        return {"event": "eval", "acc1": result["acc1"], "n_test": result["n_samples"],
                "eval_seconds": time.perf_counter() - started}


def serve(worker_cls, data_path: str) -> None:
    """The line protocol of open_clip_train_peer.py (see there), for the tether side."""
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    worker = worker_cls(data_path)
    channel.write(json.dumps(worker.info()) + "\n")
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "quit":
            break
        reply = worker.train(int(msg["steps"])) if msg["cmd"] == "train" else worker.evaluate()
        channel.write(json.dumps(reply) + "\n")


# ---------------------------------------------------------------------------------------------- orchestration

class Proc:
    def __init__(self, name: str, argv: list[str], env: dict | None = None) -> None:
        self.name = name
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                                  env=env, cwd=str(REPO))
        self.ready = self.read()

    def read(self) -> dict:
        line = self.p.stdout.readline()
        if not line:
            code = self.p.wait()
            raise SystemExit(f"{self.name} worker exited ({code}) without answering; see its stderr above")
        return json.loads(line)

    def ask(self, **msg) -> dict:
        self.p.stdin.write(json.dumps(msg) + "\n")
        self.p.stdin.flush()
        return self.read()

    def close(self) -> None:
        if self.p.poll() is None:
            try:
                self.p.stdin.write(json.dumps({"cmd": "quit"}) + "\n")
                self.p.stdin.close()
            except BrokenPipeError:
                pass
            self.p.wait(timeout=60)


def load_avg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_loss(loss: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix="tether-bench-train-") as tmp:
        data = Path(tmp) / "inputs.npz"
        t0 = time.perf_counter()
        cfg = prepare_inputs(data, args, loss)
        print(f"[{loss}] inputs: {args.steps} steps x {args.batch_size}, vocab {cfg['model']['vocab_size']}, "
              f"{len(cfg['prompts'])} prompts ({time.perf_counter() - t0:.1f} s)", flush=True)
        env = dict(os.environ)
        if args.omp_wait_policy != "inherit":
            env["OMP_WAIT_POLICY"] = args.omp_wait_policy
        env["PYTHONPATH"] = str(REPO / "src") + os.pathsep + env.get("PYTHONPATH", "")  # tether for any python
        if cfg["tether_init_state"]:
            subprocess.run([args.peer_python, str(PEER), "--data", str(data), "--dump-init",
                            cfg["tether_init_state"]], env=env, cwd=str(REPO), check=True)
        if cfg["peer_init_state"]:
            subprocess.run([args.tether_python, str(Path(__file__).resolve()), "--dump-tether-init", str(data),
                            cfg["peer_init_state"]], env=env, cwd=str(REPO), check=True)
        workers = {"tether": Proc("tether", [args.tether_python, str(Path(__file__).resolve()),
                                             "--tether-worker", str(data)], env)}
        try:
            workers["open_clip"] = Proc("open_clip", [args.peer_python, str(PEER), "--data", str(data),
                                                       "--out", str(Path(tmp) / "open_clip.json")], env)
            for name, w in workers.items():
                r = w.ready
                print(f"[{loss}] {name}: torch {r['torch']}, {r['threads']} threads, {r['params']:,} parameters "
                      f"({r['decay_params']:,} decayed, {r['no_decay_params']:,} not)", flush=True)
            load_before = load_avg()
            windows = {name: [] for name in workers}
            loads, done, w_i = [], 0, 0
            while done < args.steps:
                k = min(args.window, args.steps - done)
                order = ["tether", "open_clip"] if w_i % 2 == 0 else ["open_clip", "tether"]  # ABBA
                for name in order:
                    reply = workers[name].ask(cmd="train", steps=k)
                    windows[name].append(reply)
                loads.append(os.getloadavg()[0])
                done += k
                w_i += 1
                t_rate = k * args.batch_size / sum(windows["tether"][-1]["step_seconds"])
                o_rate = k * args.batch_size / sum(windows["open_clip"][-1]["step_seconds"])
                print(f"[{loss}] steps {done:5d}: tether {t_rate:7.0f}/s (loss {windows['tether'][-1]['loss']:.3f}), "
                      f"open_clip {o_rate:7.0f}/s (loss {windows['open_clip'][-1]['loss']:.3f}), "
                      f"ratio {t_rate / o_rate:.2f}, load {loads[-1]:.2f}", flush=True)
            evals = {name: w.ask(cmd="eval") for name, w in workers.items()}
            load_after = load_avg()
        finally:
            for w in workers.values():
                w.close()
    out = {"loss": loss, "steps": args.steps, "batch_size": args.batch_size, "window": args.window,
           "threads": args.threads, "omp_wait_policy": env.get("OMP_WAIT_POLICY", "(unset)"),
           "load_before": load_before, "load_after": load_after,
           "load_during_1min": {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}}
    pair_ratios = []
    for name in workers:
        secs = [s for r in windows[name] for s in r["step_seconds"]]
        rates = [len(r["step_seconds"]) * args.batch_size / sum(r["step_seconds"]) for r in windows[name]]
        out[name] = {"torch": workers[name].ready["torch"], "params": workers[name].ready["params"],
                     "train_seconds": sum(secs), "samples_per_s_overall": args.steps * args.batch_size / sum(secs),
                     "samples_per_s_median_window": statistics.median(rates), "window_rates": rates,
                     "final_loss": windows[name][-1]["loss"], "final_scale": windows[name][-1]["scale"],
                     "zeroshot_acc1": evals[name]["acc1"], "eval_seconds": evals[name]["eval_seconds"]}
    for t_r, o_r in zip(out["tether"]["window_rates"], out["open_clip"]["window_rates"]):
        pair_ratios.append(t_r / o_r)
    out["ratio_median_of_window_pairs"] = statistics.median(pair_ratios)
    out["ratio_overall"] = out["tether"]["samples_per_s_overall"] / out["open_clip"]["samples_per_s_overall"]
    out["ratio_median_windows"] = (out["tether"]["samples_per_s_median_window"]
                                   / out["open_clip"]["samples_per_s_median_window"])
    out["acc1_diff_points"] = 100 * (out["tether"]["zeroshot_acc1"] - out["open_clip"]["zeroshot_acc1"])
    return out


def print_table(results: list[dict]) -> None:
    t = results[0]["tether"]["torch"]
    o = results[0]["open_clip"]["torch"]
    print(f"\ntether (torch {t}) vs OpenCLIP 3.3.0 (torch {o}), {results[0]['threads']} thread(s) each, "
          f"OMP_WAIT_POLICY {results[0]['omp_wait_policy']}; samples/s = median of the "
          f"{results[0]['window']}-step windows (whole run in brackets)\n")
    print("| loss | steps x batch | tether samples/s | OpenCLIP samples/s | ratio (median of window pairs) "
          "| tether train s | OpenCLIP train s | tether zero-shot top-1 | OpenCLIP zero-shot top-1 | diff (points) "
          "| load avg before / during (median) / after |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for r in results:
        tt, oo = r["tether"], r["open_clip"]
        print(f"| {r['loss']} | {r['steps']} x {r['batch_size']} "
              f"| {tt['samples_per_s_median_window']:.0f} ({tt['samples_per_s_overall']:.0f}) "
              f"| {oo['samples_per_s_median_window']:.0f} ({oo['samples_per_s_overall']:.0f}) "
              f"| **{r['ratio_median_of_window_pairs']:.2f}x** ({r['ratio_overall']:.2f}x) "
              f"| {tt['train_seconds']:.1f} | {oo['train_seconds']:.1f} "
              f"| {tt['zeroshot_acc1']:.4f} | {oo['zeroshot_acc1']:.4f} | {r['acc1_diff_points']:+.2f} "
              f"| {r['load_before'][0]:.2f} / {r['load_during_1min']['median']:.2f} / {r['load_after'][0]:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--loss", nargs="+", choices=["clip", "siglip"], default=["clip", "siglip"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--weight-decay", type=float, default=0.1)
    ap.add_argument("--warmup", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--omp-wait-policy", choices=["inherit", "PASSIVE", "ACTIVE"], default="inherit",
                    help="OMP_WAIT_POLICY for both workers; PASSIVE keeps 2-thread timings sane on a loaded machine")
    ap.add_argument("--window", type=int, default=100, help="steps per timing window (workers alternate)")
    ap.add_argument("--tether-decay-split", choices=["tether", "open_clip"], default="tether",
                    help="control: give tether's model OpenCLIP's weight-decay split (decays embeddings too)")
    ap.add_argument("--tether-init", choices=["tether", "open_clip"], default="tether",
                    help="control: tether's model starts from OpenCLIP's initial weights for the seed")
    ap.add_argument("--peer-init", choices=["open_clip", "tether"], default="open_clip",
                    help="control: OpenCLIP's model starts from tether's initial weights for the seed")
    ap.add_argument("--siglip-init", type=float, nargs=2, default=[10.0, -10.0], metavar=("SCALE", "BIAS"))
    ap.add_argument("--tether-python", default=sys.executable, help="interpreter for the tether worker")
    ap.add_argument("--peer-python", default=str(VENV_PYTHON), help="the OpenCLIP venv's interpreter")
    ap.add_argument("--json", help="also write all results here")
    ap.add_argument("--tether-worker", metavar="DATA", help=argparse.SUPPRESS)
    ap.add_argument("--dump-tether-init", nargs=2, metavar=("DATA", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.tether_worker:
        serve(TetherWorker, args.tether_worker)
        return
    if args.dump_tether_init:
        dump_tether_init(*args.dump_tether_init)
        return
    if not Path(args.peer_python).exists():
        raise SystemExit(f"{args.peer_python} not found: create the OpenCLIP venv (see bench/open_clip_fixtures.py)")
    print(f"load average before: {load_avg()} on {os.cpu_count()} CPUs", flush=True)
    results = []
    for loss in args.loss:
        results.append(run_loss(loss, args))
        if args.json:  # after each loss: a long run keeps what it has
            Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    print_table(results)
    print(f"\nload average after: {load_avg()}")


if __name__ == "__main__":
    main()
