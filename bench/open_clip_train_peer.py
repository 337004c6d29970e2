"""OpenCLIP side of ``bench/bench_train_vs_open_clip.py``: train the tiny CLIP with open_clip itself.

Runs inside the OpenCLIP venv (open_clip_torch 3.3.0, torch 2.14.1, torchvision 0.29.1; see
``bench/open_clip_fixtures.py`` for how it was made); never imports tether. The main script
starts it and drives it over stdin/stdout, one JSON object per line:

    <- {"event": "ready", ...}                 after the model, optimizer and data are set up
    -> {"cmd": "train", "steps": K}            run the next K optimizer steps
    <- {"event": "trained", "step", "step_seconds": [...], "loss"}
    -> {"cmd": "eval"}                         zero-shot top-1 on the test images
    <- {"event": "eval", "acc1", ...}          (also written to --out as JSON)
    -> {"cmd": "quit"}

so the two libraries can be timed in alternating windows while only one computes at a time.

The data file (written by the main script) holds everything both sides need: the train and
test images (uint8), the per-step image indices and caption token ids (tokenized once, by
tether's BPE, so both models see the same ids), the zero-shot prompt ids and a JSON config.

What it mirrors from OpenCLIP's own training code (``open_clip_train`` 3.3.0):
* model: ``open_clip.model.CLIP`` built from a config dict (``output_dict=True``, as
  ``create_model`` does for training), text pooled at the first ``eos_id`` (``pool_type='eos'``);
* optimizer: ``main.py``'s AdamW split (no weight decay where ``p.ndim < 2`` or the name contains
  'bn', 'ln', 'bias' or 'logit_scale');
* schedule: ``open_clip_train.scheduler.cosine_lr`` (linear warmup, then cosine to 0);
* step: ``train.py``'s ``train_one_epoch`` with ``accum_freq=1``, fp32: scheduler(step),
  zero_grad, forward, ``loss(**model_out, output_dict=True)``, backward, ``clip_grad_norm_``,
  optimizer.step, ``logit_scale.clamp_(0, log(100))``;
* loss: ``open_clip.loss.ClipLoss`` / ``SigLipLoss`` (single process).
Only the step is timed; building the batch tensors from the arrays is not.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F


def batch_pixels(images_u8: np.ndarray, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """uint8 (n, H, W) grey -> normalised (n, 3, H, W) float32 (the same op as the tether side)."""
    x = torch.from_numpy(np.ascontiguousarray(images_u8)).to(torch.float32).div(255.0)
    x = x.unsqueeze(1).expand(-1, 3, -1, -1)
    return ((x - mean) / std).contiguous()


def build_model(cfg: dict):
    from open_clip.model import CLIP
    m = cfg["model"]
    vision_cfg = dict(image_size=m["image_size"], patch_size=m["patch_size"], width=m["vision_width"],
                      layers=m["vision_layers"], head_width=m["vision_width"] // m["vision_heads"],
                      mlp_ratio=m["vision_mlp_ratio"])
    text_cfg = dict(context_length=m["context_length"], vocab_size=m["vocab_size"], width=m["text_width"],
                    heads=m["text_heads"], layers=m["text_layers"], mlp_ratio=m["text_mlp_ratio"],
                    pool_type="eos", eos_id=m["eos_id"], pad_id=m["pad_id"])
    init_bias = cfg["logit_bias_init"]
    return CLIP(embed_dim=m["embed_dim"], vision_cfg=vision_cfg, text_cfg=text_cfg, quick_gelu=m["quick_gelu"],
                init_logit_scale=math.log(cfg["logit_scale_init"]),
                init_logit_bias=None if init_bias is None else float(init_bias), output_dict=True)


def build_optimizer(model, cfg: dict):
    """open_clip_train/main.py's AdamW parameter groups."""
    exclude = lambda n, p: p.ndim < 2 or "bn" in n or "ln" in n or "bias" in n or "logit_scale" in n  # noqa: E731
    named = list(model.named_parameters())
    gain_or_bias = [p for n, p in named if exclude(n, p) and p.requires_grad]
    rest = [p for n, p in named if not exclude(n, p) and p.requires_grad]
    return torch.optim.AdamW([{"params": gain_or_bias, "weight_decay": 0.0},
                              {"params": rest, "weight_decay": cfg["weight_decay"]}],
                             lr=cfg["lr"], betas=tuple(cfg["betas"]), eps=cfg["eps"])


def load_initial_state(model, path: str) -> None:
    """Load a full state dict (written by the tether side under OpenCLIP names) strictly."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"{path}: missing {missing}, unexpected {unexpected}")


def dump_initial_state(data_path: str, out: str) -> None:
    """Build the model as Peer does (same seed) and save its initial state dict."""
    cfg = json.loads(str(np.load(data_path)["config"]))
    torch.manual_seed(cfg["seed"])
    torch.save({k: v.detach().clone() for k, v in build_model(cfg).state_dict().items()}, out)


class Peer:
    def __init__(self, data_path: str) -> None:
        from open_clip.loss import ClipLoss, SigLipLoss
        from open_clip_train.scheduler import cosine_lr
        started = time.perf_counter()
        d = np.load(data_path)
        self.cfg = cfg = json.loads(str(d["config"]))
        torch.set_num_threads(cfg["threads"])
        self.train_images = d["train_images"]
        self.batch_indices = d["batch_indices"]
        self.batch_ids = d["batch_ids"]
        self.test_images, self.test_labels = d["test_images"], d["test_labels"]
        self.prompt_ids = d["prompt_ids"]
        self.mean = torch.tensor(cfg["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        self.std = torch.tensor(cfg["std"], dtype=torch.float32).view(1, 3, 1, 1)
        torch.manual_seed(cfg["seed"])
        self.model = build_model(cfg)
        if cfg.get("peer_init_state"):  # control: start from tether's initial weights (OpenCLIP names)
            load_initial_state(self.model, cfg["peer_init_state"])
        self.optimizer = build_optimizer(self.model, cfg)
        self.scheduler = cosine_lr(self.optimizer, cfg["lr"], cfg["warmup"], cfg["steps"])
        self.loss = ClipLoss() if cfg["loss"] == "clip" else SigLipLoss()
        self.step = 0
        self.setup_seconds = time.perf_counter() - started

    def info(self) -> dict:
        import open_clip
        groups = self.optimizer.param_groups
        return {"event": "ready", "library": "open_clip", "open_clip": open_clip.__version__,
                "torch": torch.__version__, "threads": torch.get_num_threads(),
                "params": sum(p.numel() for p in self.model.parameters()),
                "decay_params": sum(p.numel() for p in groups[1]["params"]),
                "no_decay_params": sum(p.numel() for p in groups[0]["params"]),
                "setup_seconds": self.setup_seconds}

    def train(self, k: int) -> dict:
        model, opt, cfg = self.model, self.optimizer, self.cfg
        model.train()
        times, loss_value = [], float("nan")
        for _ in range(k):
            if self.step >= cfg["steps"]:
                break
            pixels = batch_pixels(self.train_images[self.batch_indices[self.step]], self.mean, self.std)
            ids = torch.from_numpy(self.batch_ids[self.step].astype(np.int64))
            t0 = time.perf_counter()
            self.scheduler(self.step)
            opt.zero_grad()
            out = model(pixels, ids)
            losses = self.loss(**out, output_dict=True)
            total = sum(losses.values())
            total.backward()
            if cfg["grad_clip"]:
                torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"], norm_type=2.0)
            opt.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(100))
            loss_value = total.item()
            times.append(time.perf_counter() - t0)
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"open_clip loss became {loss_value} at step {self.step}")
            self.step += 1
        return {"event": "trained", "step": self.step, "step_seconds": times, "loss": loss_value,
                "scale": self.model.logit_scale.exp().item()}

    @torch.no_grad()
    def evaluate(self) -> dict:
        """Zero-shot top-1: prompt-ensemble class weights (normalise, mean per class, normalise)."""
        started = time.perf_counter()
        model = self.model.eval()
        c, t, length = self.prompt_ids.shape
        emb = model.encode_text(torch.from_numpy(self.prompt_ids.reshape(c * t, length).astype(np.int64)),
                                normalize=True)
        weights = F.normalize(emb.view(c, t, -1).mean(1), dim=-1)
        preds = []
        for s in range(0, len(self.test_images), 1000):
            x = batch_pixels(self.test_images[s:s + 1000], self.mean, self.std)
            preds.append((model.encode_image(x, normalize=True) @ weights.T).argmax(dim=1))
        preds = torch.cat(preds).numpy()
        acc1 = float((preds == self.test_labels).mean())
        return {"event": "eval", "acc1": acc1, "n_test": int(len(preds)),
                "eval_seconds": time.perf_counter() - started}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True, help="the .npz written by bench_train_vs_open_clip.py")
    ap.add_argument("--out", help="write the final results here as JSON")
    ap.add_argument("--dump-init", metavar="PATH", help="only save the seeded initial state dict to PATH")
    args = ap.parse_args()
    if args.dump_init:
        dump_initial_state(args.data, args.dump_init)
        return
    channel = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)  # protocol only
    sys.stdout = sys.stderr  # anything else printed goes to stderr
    peer = Peer(args.data)
    ready = peer.info()
    channel.write(json.dumps(ready) + "\n")
    trained_seconds: list[float] = []
    for line in sys.stdin:
        msg = json.loads(line)
        if msg["cmd"] == "train":
            reply = peer.train(int(msg["steps"]))
            trained_seconds += reply["step_seconds"]
        elif msg["cmd"] == "eval":
            reply = peer.evaluate()
            if args.out:
                with open(args.out, "w") as f:
                    json.dump({**ready, **reply, "steps": peer.step, "step_seconds": trained_seconds}, f)
        elif msg["cmd"] == "quit":
            break
        else:
            reply = {"event": "error", "error": f"unknown command {msg['cmd']!r}"}
        channel.write(json.dumps(reply) + "\n")


if __name__ == "__main__":
    main()
