#!/usr/bin/python3
"""
gen_pth_fixtures.py - write the small PyTorch checkpoints that tests/test_pth.c reads.

Each fixture tests/data/pth/NAME.pth is written by torch.save (torch 1.13, zip format unless
stated) and comes with NAME.ref, the expected output of the C reader computed here by an
independent walk in Python:

  line 1:          number of tensors N
  next N lines:    name ndim d0 .. d(ndim-1) v0 v1 ... (values as 8-hex-digit float32 bits)

The walk visits dicts only (nested keys joined with '.', int keys in decimal), in insertion
order, and keeps float tensors (f32, f64, f16, bf16) converted with .float() (exact for
f16/bf16, round-to-nearest for f64), made contiguous. The legacy fixture has no .ref: the
reader must refuse it.

Run:  /usr/bin/python3 scripts/gen_pth_fixtures.py      (needs torch)
Deterministic (fixed seed, fixed zip timestamps) except legacy.pth, whose storage keys are
memory addresses in the old format.
"""
import argparse
import collections
import os
import struct
import zipfile

import numpy as np
import torch
import torch.nn as nn

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "pth")
FLOATS = (torch.float32, torch.float64, torch.float16, torch.bfloat16)


def flatten(obj, prefix, acc):
    """Collect (name, float32 tensor) pairs the way the C reader must."""
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(k, bool) or not isinstance(k, (str, int)):
                continue
            key = str(k)
            flatten(v, prefix + "." + key if prefix else key, acc)
    elif isinstance(obj, torch.Tensor) and obj.dtype in FLOATS:
        acc.append((prefix, obj.detach().float().contiguous()))


def write_ref(name, obj):
    acc = []
    flatten(obj, "", acc)
    with open(os.path.join(OUT, name + ".ref"), "w") as f:
        f.write("%d\n" % len(acc))
        for key, t in acc:
            vals = t.reshape(-1).numpy().view(np.uint32)
            f.write("%s %d%s%s\n" % (key, t.dim(),
                                     "".join(" %d" % d for d in t.shape),
                                     "".join(" %08x" % v for v in vals)))


def save(name, obj, **kw):
    path = os.path.join(OUT, name + ".pth")
    torch.save(obj, path, **kw)
    write_ref(name, obj)
    return path


class Small(nn.Module):
    """Linear + LayerNorm + BatchNorm (its num_batches_tracked is int64: skipped)."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.ln = nn.LayerNorm(3)
        self.bn = nn.BatchNorm1d(3)


class Block(nn.Module):
    def __init__(self, d, m):
        super().__init__()
        self.norm1 = nn.LayerNorm(d)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(d, 3 * d)
        self.attn.proj = nn.Linear(d, d)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(d, m)
        self.mlp.fc2 = nn.Linear(m, d)


class TinyViT(nn.Module):
    """timm/DINO key names: cls_token, pos_embed, patch_embed.proj, blocks.N.*, norm."""

    def __init__(self, d=8, depth=2, patch=4, grid=2, m=16):
        super().__init__()
        self.cls_token = nn.Parameter(torch.randn(1, 1, d))
        self.pos_embed = nn.Parameter(torch.randn(1, 1 + grid * grid, d))
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, d, patch, patch)
        self.blocks = nn.ModuleList([Block(d, m) for _ in range(depth)])
        self.norm = nn.LayerNorm(d)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)

    small = Small()
    with torch.no_grad():
        for p in small.parameters():
            p.normal_()
        small.bn.running_mean.normal_()
    sd = small.state_dict()  # OrderedDict with _metadata (pickled with BUILD)
    save("state_dict", sd)
    save("nested", {"state_dict": sd, "epoch": 5, "arch": "small"})
    save("model_key", {"model": sd, "meta": {"step": 10, "lr": 0.1}, "tags": ["a", "b"]})

    # Protocol-4 pickle (FRAME, SHORT_BINUNICODE, MEMOIZE, STACK_GLOBAL opcodes).
    save("proto4", sd, pickle_protocol=4)

    # dtypes: float ones converted, others skipped; special values; 0-dim and empty.
    dt = collections.OrderedDict()
    dt["f32"] = torch.tensor([1.5, -0.0, float("inf"), 1e-40, -3.25e10], dtype=torch.float32)
    dt["f64"] = torch.tensor([[0.1, 1.0 / 3.0], [2.0 ** -140, -1e300]], dtype=torch.float64)
    dt["f16"] = torch.tensor([0.5, -65504.0, 6e-8, 1e-5, float("-inf"), 3.14], dtype=torch.float16)
    dt["bf16"] = torch.tensor([1.0, -2.5e38, 1e-39, 3.14159, 7.0], dtype=torch.bfloat16)
    dt["i64"] = torch.arange(5)
    dt["i32"] = torch.arange(3, dtype=torch.int32)
    dt["u8"] = torch.arange(4, dtype=torch.uint8)
    dt["bool"] = torch.tensor([True, False])
    dt["c64"] = torch.tensor([1 + 2j], dtype=torch.complex64)
    dt["scalar"] = torch.tensor(2.75)
    dt["scalar16"] = torch.tensor(-1.5, dtype=torch.float16)
    dt["empty"] = torch.zeros(0, 3)
    dt[7] = torch.full((2,), 7.0)  # integer key
    save("dtypes", dt)

    # Views: non-contiguous, offsets into shared storages, stride 0, permutation.
    base = torch.arange(24, dtype=torch.float32) * 0.5
    m34 = torch.randn(3, 4)
    h = torch.randn(6, dtype=torch.float16)
    views = {
        "t": m34.t(),
        "row1": m34[1],
        "col2": m34[:, 2],
        "a": base[2:5],
        "b": base[5:17].view(3, 4),
        "step": base[1::5],
        "perm": base.view(2, 3, 4).permute(2, 0, 1),
        "expand": torch.tensor([1.0, 2.0, 3.0]).expand(4, 3),
        "h_slice": h[1::2],
    }
    save("views", views)

    params = collections.OrderedDict()
    params["weight"] = nn.Parameter(torch.randn(2, 3))
    params["bias"] = nn.Parameter(torch.randn(2), requires_grad=False)
    save("params", params)

    # Tiny DINO-style ViT, plain and as a full DINO training checkpoint.
    vit = TinyViT()
    vsd = vit.state_dict()
    save("vit_plain", vsd)
    teacher = collections.OrderedDict(("backbone." + k, v) for k, v in vsd.items())
    teacher["head.mlp.0.weight"] = torch.randn(4, 8)
    student = collections.OrderedDict(("module." + k, v.clone() + 1) for k, v in teacher.items())
    opt = torch.optim.SGD(vit.parameters(), lr=0.1, momentum=0.9)
    for p in vit.parameters():
        p.grad = torch.ones_like(p)
    opt.step()
    full = {
        "student": student,
        "teacher": teacher,
        "optimizer": opt.state_dict(),
        "epoch": 3,
        "args": argparse.Namespace(arch="vit_tiny", patch_size=4, lr=0.0005,
                                   local_crops_scale=(0.05, 0.4), out_dim=65536,
                                   data_path="/path/to/imagenet", nested={"k": [1, 2.5]}),
        "dino_loss": {"center": torch.randn(1, 4)},
        "fp16_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5,
                        "growth_interval": 2000, "_growth_tracker": 0},
        "best_acc": np.float64(0.5),
        "np_array": np.arange(3, dtype=np.float32),
    }
    save("dino_full", full)
    save("vit_teacher", {"teacher": teacher, "epoch": 1})

    # The same state dict, DEFLATE-compressed (torch itself writes STORED entries).
    src = os.path.join(OUT, "state_dict.pth")
    dst = os.path.join(OUT, "deflate.pth")
    with zipfile.ZipFile(src) as zi, zipfile.ZipFile(dst, "w", zipfile.ZIP_DEFLATED) as zo:
        for info in zi.infolist():
            zinfo = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zo.writestr(zinfo, zi.read(info.filename), compress_type=zipfile.ZIP_DEFLATED)
    write_ref("deflate", sd)

    # Legacy (pre-1.6) format: must be refused with a conversion hint.
    torch.save(sd, os.path.join(OUT, "legacy.pth"), _use_new_zipfile_serialization=False)

    total = sum(os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT))
    print("wrote %s (%d bytes)" % (OUT, total))


if __name__ == "__main__":
    main()
