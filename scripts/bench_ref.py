#!/usr/bin/python3
"""bench_ref.py - the PyTorch side of `make bench` (see bench/README.md).

It defines the reference ViT that UniFormaly runs (DINO / timm style: convolutional patch
embedding, CLS token, learned positional embedding for the trained grid, pre-norm blocks,
LayerNorm eps 1e-6, qkv bias, exact erf GELU) whose forward pass stops after block 10 and
returns the patch tokens (CLS excluded) of blocks 1..10 stacked as [10][B][Np][D] - exactly
what uniformaly's uf_forward produces with req.blocks = 0x3FF. The dinov2_* models are
DINOv2 ViT-S/14 and B/14 as published (official names, LayerScale blocks.N.ls1/ls2.gamma,
37x37 pos_embed) run at 448x448, so the table resamples to 32x32 the official way (bicubic,
scale factor (32 + 0.1) / 37) inside the forward, as dinov2's interpolate_pos_encoding.

Two sub-commands:
  gen   write, for each model, into bench/out/ (skipping files that already exist):
          <model>.safetensors      seeded random weights, F32, timm names, all 12 blocks
          <model>_b<B>.onnx        torch.onnx.export of the 10-block forward, static batch B
          <model>_check_in.f32     one seeded input image  [1][3][S][S] float32 LE
          <model>_check_out.f32    its float64-PyTorch block outputs [10][1][Np][D] (as f32)
  time  time the PyTorch forward (float32, inference_mode, torch.set_num_threads(T)) for
        each model and batch; append one JSON line per (model, batch) to --out. Also
        reports the float32 PyTorch error against the float64 reference above.

Only the standard library and torch are needed (safetensors are written by hand:
8-byte little-endian header length, JSON header, raw little-endian data).
"""
import argparse
import json
import math
import os
import struct
import sys
import time

# The three shapes of the benchmark (issue text). depth is the checkpoint's depth; the
# forward always stops after block FORWARD_BLOCKS.
MODELS = {
    "vit_s16": dict(dim=384, heads=6, depth=12, mlp=1536, patch=16),
    "vit_b16": dict(dim=768, heads=12, depth=12, mlp=3072, patch=16),
    "vit_b8": dict(dim=768, heads=12, depth=12, mlp=3072, patch=8),
    # DINOv2 (issue 15): trained 37x37 grid (518 px), timed at 448 px, with LayerScale
    "dinov2_s14": dict(dim=384, heads=6, depth=12, mlp=1536, patch=14, img=448, grid=37, ls=True,
                       seed=3),
    "dinov2_b14": dict(dim=768, heads=12, depth=12, mlp=3072, patch=14, img=448, grid=37, ls=True,
                       seed=4),
}
IMG = 224            # input side in pixels, unless the model says otherwise ("img")
FORWARD_BLOCKS = 10  # UniFormaly needs blocks 1..10
SEED = 1234          # weights: SEED + model index; inputs: fixed seeds below
ONNX_OPSET = 14


def img_of(cfg):
    return cfg.get("img", IMG)


def flops_per_image(cfg):
    """Multiply-adds x 2 of the 10-block forward; the same formula as bench_vit.c."""
    D, M, P, H = cfg["dim"], cfg["mlp"], cfg["patch"], cfg["heads"]
    Np = (img_of(cfg) // P) ** 2
    Nt = Np + 1
    hd = D // H
    patch = 2 * Np * (3 * P * P) * D
    block = (2 * Nt * D * 3 * D            # qkv
             + 2 * 2 * H * Nt * Nt * hd    # Q K^T and A V
             + 2 * Nt * D * D              # proj
             + 2 * 2 * Nt * D * M)         # fc1 + fc2
    return patch + FORWARD_BLOCKS * block


# ---------------------------------------------------------------------------------------
# The reference model (imports torch lazily so `time` can report a clean skip without it)
# ---------------------------------------------------------------------------------------

def build_model_classes(torch):
    nn = torch.nn

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.scale = (dim // heads) ** -0.5
            self.qkv = nn.Linear(dim, 3 * dim, bias=True)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):                     # x: [B][Nt][D]
            B, N, C = x.shape
            qkv = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads)
            qkv = qkv.permute(2, 0, 3, 1, 4)      # [3][B][heads][Nt][hd]
            q, k, v = qkv[0], qkv[1], qkv[2]
            attn = (q @ k.transpose(-2, -1)) * self.scale   # [B][heads][Nt][Nt]
            attn = attn.softmax(dim=-1)
            x = (attn @ v).transpose(1, 2).reshape(B, N, C)
            return self.proj(x)

    class Mlp(nn.Module):
        def __init__(self, dim, hidden):
            super().__init__()
            self.fc1 = nn.Linear(dim, hidden)
            self.act = nn.GELU()                  # exact (erf) GELU
            self.fc2 = nn.Linear(hidden, dim)

        def forward(self, x):
            return self.fc2(self.act(self.fc1(x)))

    class LayerScale(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.gamma = nn.Parameter(torch.ones(dim))

        def forward(self, x):
            return x * self.gamma

    class Block(nn.Module):
        def __init__(self, dim, heads, mlp, ls):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.attn = Attention(dim, heads)
            self.ls1 = LayerScale(dim) if ls else nn.Identity()
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.mlp = Mlp(dim, mlp)
            self.ls2 = LayerScale(dim) if ls else nn.Identity()

        def forward(self, x):
            x = x + self.ls1(self.attn(self.norm1(x)))
            return x + self.ls2(self.mlp(self.norm2(x)))

    class PatchEmbed(nn.Module):
        def __init__(self, patch, dim):
            super().__init__()
            self.proj = nn.Conv2d(3, dim, kernel_size=patch, stride=patch)

        def forward(self, x):                     # [B][3][H][W] -> [B][Np][D]
            return self.proj(x).flatten(2).transpose(1, 2)

    class ViT(nn.Module):
        """timm/DINO VisionTransformer whose forward returns blocks 1..10's patch tokens."""

        def __init__(self, dim, heads, depth, mlp, patch, img=IMG, grid=None, ls=False):
            super().__init__()
            self.grid, self.g = grid or img // patch, img // patch   # trained, run grid
            self.patch_embed = PatchEmbed(patch, dim)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
            self.pos_embed = nn.Parameter(torch.zeros(1, 1 + self.grid * self.grid, dim))
            self.blocks = nn.ModuleList([Block(dim, heads, mlp, ls) for _ in range(depth)])
            self.norm = nn.LayerNorm(dim, eps=1e-6)   # saved, unused by the 10-block pass

        def pos(self):
            if self.grid == self.g:               # trained size: no interpolation needed
                return self.pos_embed
            D, M = self.pos_embed.shape[-1], self.grid  # dinov2 interpolate_pos_encoding
            p = self.pos_embed[:, 1:].reshape(1, M, M, D).permute(0, 3, 1, 2)
            sf = float(self.g + 0.1) / M
            p = nn.functional.interpolate(p, scale_factor=(sf, sf), mode="bicubic")
            p = p.permute(0, 2, 3, 1).reshape(1, -1, D)
            return torch.cat([self.pos_embed[:, :1], p], dim=1)

        def forward(self, x):
            x = self.patch_embed(x)
            x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
            x = x + self.pos()
            outs = []
            for blk in self.blocks[:FORWARD_BLOCKS]:
                x = blk(x)
                outs.append(x[:, 1:])             # patch tokens, CLS excluded
            return torch.stack(outs)              # [10][B][Np][D]

    return ViT


def init_random(torch, model, seed):
    """Seeded weights: linear/conv ~ N(0, 1/fan_in), biases and LayerNorm affine
    parameters small perturbations of (0, 1), cls/pos ~ N(0, 0.02^2) - activations stay
    O(1) over ten blocks, so no denormals or overflow distort the timings."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("weight") and p.dim() >= 2:
                fan_in = p[0].numel()
                p.copy_(torch.randn(p.shape, generator=g) / math.sqrt(fan_in))
            elif name.endswith(".gamma"):          # LayerScale: O(1), as trained ones
                p.copy_(0.5 + 0.02 * torch.randn(p.shape, generator=g))
            elif ".norm" in name or name.startswith("norm"):
                base = 1.0 if name.endswith("weight") else 0.0
                p.copy_(base + 0.02 * torch.randn(p.shape, generator=g))
            else:                                  # biases, cls_token, pos_embed
                p.copy_(0.02 * torch.randn(p.shape, generator=g))


def make_model(torch, name):
    cfg = MODELS[name]
    ViT = build_model_classes(torch)
    m = ViT(cfg["dim"], cfg["heads"], cfg["depth"], cfg["mlp"], cfg["patch"], img_of(cfg),
            cfg.get("grid"), cfg.get("ls", False))
    # the first three keep the seeds they always had (their sorted index)
    old = sorted(k for k in MODELS if "seed" not in MODELS[k])
    init_random(torch, m, SEED + (cfg["seed"] if "seed" in cfg else old.index(name)))
    return m.eval()


def make_input(torch, batch, seed, img=IMG):
    """Normalised-image-like input [B][3][img][img] ~ N(0, 1), seeded."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, img, img, generator=g)


# ---------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------

def save_safetensors(path, tensors):
    """Write {name: float32 tensor} as .safetensors by hand (header JSON + raw LE data)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").float().contiguous()
        data = t.numpy().astype("<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    header["__metadata__"] = {"format": "pt", "producer": "uniformaly scripts/bench_ref.py"}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)             # keep the data 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)


def save_f32(path, t):
    tmp = path + ".tmp"
    t.detach().float().contiguous().numpy().astype("<f4").tofile(tmp)
    os.replace(tmp, path)


def cmd_gen(args):
    import torch
    torch.set_num_threads(args.threads)
    os.makedirs(args.outdir, exist_ok=True)
    for name in args.models:
        t0 = time.time()
        model = None
        base = os.path.join(args.outdir, name)
        st = base + ".safetensors"
        onnx = [f"{base}_b{b}.onnx" for b in args.batches]
        chk_in, chk_out = base + "_check_in.f32", base + "_check_out.f32"
        todo = [p for p in [st, chk_in, chk_out] + onnx if not os.path.exists(p)]
        if not todo:
            continue
        model = make_model(torch, name)
        if not os.path.exists(st):
            save_safetensors(st, dict(model.state_dict()))
        if not os.path.exists(chk_in) or not os.path.exists(chk_out):
            x = make_input(torch, 1, 7, img_of(MODELS[name]))
            with torch.inference_mode():
                ref = make_model(torch, name).double()(x.double())   # [10][1][Np][D]
            save_f32(chk_out, ref)
            save_f32(chk_in, x)
        for b, path in zip(args.batches, onnx):
            if os.path.exists(path):
                continue
            x = make_input(torch, b, 11, img_of(MODELS[name]))
            tmp = path + ".tmp"
            with torch.no_grad():
                torch.onnx.export(model, (x,), tmp, opset_version=ONNX_OPSET,
                                  input_names=["pixels"], output_names=["blocks"],
                                  do_constant_folding=True)
            os.replace(tmp, path)
        print(f"bench_ref: generated {name} in {time.time() - t0:.1f} s", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------

def time_calls(fn, budget, min_reps=3, max_reps=50):
    """Warm up (at least one call and 0.5 s), then time calls until both min_reps and the
    budget (seconds) are reached, or max_reps. Returns the per-call times in seconds."""
    t_end = time.perf_counter() + 0.5
    fn()
    while time.perf_counter() < t_end:
        fn()
    times, spent = [], 0.0
    while len(times) < max_reps and (len(times) < min_reps or spent < budget):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        times.append(dt)
        spent += dt
    return times


def median(v):
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def rel_err(out, ref):
    """max |out - ref| / max |ref| over all elements (ref from float64 PyTorch)."""
    import numpy as np
    ref = np.asarray(ref, dtype=np.float64)
    out = np.asarray(out, dtype=np.float64).reshape(ref.shape)
    return float(np.max(np.abs(out - ref)) / max(np.max(np.abs(ref)), 1e-30))


def emit(f, rec):
    f.write(json.dumps(rec) + "\n")
    f.flush()


def cmd_time(args):
    with open(args.out, "a") as f:
        try:
            import numpy as np
            import torch
        except Exception as e:                    # report, never drop silently
            for name in args.models:
                for b in args.batches:
                    emit(f, {"impl": "torch", "model": name, "batch": b,
                             "status": "skipped", "reason": f"import failed: {e}"})
            return 0
        torch.set_num_threads(args.threads)
        try:
            torch.set_num_interop_threads(1)
        except RuntimeError:
            pass
        for name in args.models:
            model = make_model(torch, name)
            cfg = MODELS[name]
            err = None
            base = os.path.join(args.outdir, name)
            if os.path.exists(base + "_check_in.f32"):
                x = torch.from_numpy(np.fromfile(base + "_check_in.f32", dtype="<f4"))
                ref = np.fromfile(base + "_check_out.f32", dtype="<f4")
                with torch.inference_mode():
                    err = rel_err(model(x.reshape(1, 3, img_of(cfg), img_of(cfg))).numpy(), ref)
            for b in args.batches:
                x = make_input(torch, b, 11, img_of(cfg))
                with torch.inference_mode():
                    times = time_calls(lambda: model(x), args.budget)
                best, med = min(times) / b, median(times) / b
                gflop = flops_per_image(cfg) / 1e9
                emit(f, {"impl": "torch", "model": name, "batch": b, "status": "ok",
                         "threads": torch.get_num_threads(), "reps": len(times),
                         "ms_per_img": best * 1e3, "ms_per_img_median": med * 1e3,
                         "gflops": gflop / best, "rel_err": err,
                         "version": torch.__version__})
                print(f"bench_ref: torch {name} b{b}: {best * 1e3:.1f} ms/img "
                      f"(median {med * 1e3:.1f}, {len(times)} reps)", file=sys.stderr)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("cmd", choices=["gen", "time"])
    ap.add_argument("--models", default=",".join(MODELS),
                    help="comma-separated subset of " + ",".join(MODELS))
    ap.add_argument("--batches", default="1,8", help="comma-separated batch sizes")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--budget", type=float, default=6.0,
                    help="seconds of timed calls per (model, batch), at least 3 calls")
    ap.add_argument("--outdir", default="bench/out")
    ap.add_argument("--out", default="bench/out/torch.jsonl", help="JSON lines (appended)")
    args = ap.parse_args()
    args.models = [m for m in args.models.split(",") if m]
    for m in args.models:
        if m not in MODELS:
            ap.error(f"unknown model {m!r}")
    args.batches = [int(b) for b in args.batches.split(",") if b]
    if args.cmd == "gen":
        cmd_gen(args)
        return 0
    return cmd_time(args)


if __name__ == "__main__":
    sys.exit(main())
