#!/usr/bin/python3
"""
gen_golden.py - regenerate the committed golden files in tests/data/golden/.

An independent PyTorch reference ViT written in the style of DINO's vision_transformer.py
(PatchEmbed conv, cls_token, pos_embed with DINO's interpolate_pos_encoding, pre-norm blocks,
exact GELU, LayerNorm eps 1e-6) is filled with seeded random weights and run in float64 on
seeded random pixels. Its outputs are what the C forward pass is checked against; the
checkpoint variants (safetensors F32/F16/BF16, Hugging Face names, several .pth layouts)
all hold the same weights and are what the C checkpoint loader is checked against.

Every weight is rounded to a bfloat16-representable value that is also exact in float16,
so the F32, F16 and BF16 files hold identical weights and one golden output serves all.

Run:  /usr/bin/python3 scripts/gen_golden.py   (or `make golden`); needs torch (1.13).
Deterministic: fixed seeds, fixed file layout.
"""
import argparse
import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "golden")

# --------------------------------------------------------------------------------------
# Reference model, DINO style (facebookresearch/dino vision_transformer.py)
# --------------------------------------------------------------------------------------


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()  # exact (erf) GELU
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Attention(nn.Module):
    def __init__(self, dim, num_heads):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)  # [B][heads][N][N]
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        return x, attn


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_hidden):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, mlp_hidden)

    def forward(self, x):
        y, attn = self.attn(self.norm1(x))
        x = x + y
        x = x + self.mlp(self.norm2(x))
        return x, attn


class PatchEmbed(nn.Module):
    def __init__(self, patch_size, embed_dim):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)  # [B][Np][D]


class VisionTransformer(nn.Module):
    def __init__(self, patch, dim, depth, heads, mlp, grid, n_classes):
        super().__init__()
        self.patch_embed = PatchEmbed(patch, dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid * grid, dim))
        self.blocks = nn.ModuleList([Block(dim, heads, mlp) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, n_classes) if n_classes > 0 else None
        self.last_pos = []  # [pos]: the positional embedding used by the last forward

    def interpolate_pos_encoding(self, x, w, h):
        # Verbatim DINO logic (w is the *height* axis: forward does B, nc, w, h = x.shape).
        npatch = x.shape[1] - 1
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        class_pos_embed = self.pos_embed[:, 0]
        patch_pos_embed = self.pos_embed[:, 1:]
        dim = x.shape[-1]
        w0 = w // self.patch_embed.patch_size
        h0 = h // self.patch_embed.patch_size
        # a small number is added to avoid floating point error in the interpolation
        w0, h0 = w0 + 0.1, h0 + 0.1
        patch_pos_embed = F.interpolate(
            patch_pos_embed.reshape(1, int(math.sqrt(N)), int(math.sqrt(N)), dim).permute(0, 3, 1, 2),
            scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
            mode="bicubic",
        )
        assert int(w0) == patch_pos_embed.shape[-2] and int(h0) == patch_pos_embed.shape[-1]
        patch_pos_embed = patch_pos_embed.permute(0, 2, 3, 1).view(1, -1, dim)
        return torch.cat((class_pos_embed.unsqueeze(0), patch_pos_embed), dim=1)

    def forward(self, x):
        B, nc, w, h = x.shape
        x = self.patch_embed(x)
        cls_tokens = self.cls_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        pos = self.interpolate_pos_encoding(x, w, h)
        self.last_pos[:] = [pos.detach()]
        x = x + pos
        tokens, attns = [], []
        for blk in self.blocks:
            x, a = blk(x)
            tokens.append(x)
            attns.append(a)
        xn = self.norm(x)
        cls = xn[:, 0]
        logits = self.head(cls) if self.head is not None else None
        return tokens, attns, cls, logits


# --------------------------------------------------------------------------------------
# Weights
# --------------------------------------------------------------------------------------


def exact_round(t):
    """Round to bfloat16, then make sure the value is also exact in float16 (flush
    magnitudes below float16's smallest normal, 2^-14, to +-2^-14)."""
    t = t.to(torch.bfloat16).to(torch.float32)
    tiny = 2.0 ** -14
    small = (t.abs() < tiny) & (t != 0)
    t = torch.where(small, torch.sign(t) * tiny, t)
    assert torch.equal(t.to(torch.float16).to(torch.float32), t)
    assert torch.equal(t.to(torch.bfloat16).to(torch.float32), t)
    return t


def make_weights(cfg, seed):
    """Timm/DINO-named state dict with realistic scales (float32, bf16/f16-exact)."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=g) * std + mean

    P, D, M, G, C = cfg["patch"], cfg["dim"], cfg["mlp"], cfg["grid"], cfg["classes"]
    sd = {}
    fan = 3 * P * P
    sd["cls_token"] = rn(1, 1, D, std=0.3)
    sd["pos_embed"] = rn(1, 1 + G * G, D, std=0.2)
    sd["patch_embed.proj.weight"] = rn(D, 3, P, P, std=0.8 / math.sqrt(fan))
    sd["patch_embed.proj.bias"] = rn(D, std=0.05)
    for i in range(cfg["depth"]):
        b = "blocks.%d." % i
        sd[b + "norm1.weight"] = rn(D, std=0.1, mean=1.0)
        sd[b + "norm1.bias"] = rn(D, std=0.05)
        # q and k rows larger so attention is clearly non-uniform; v rows smaller
        qk = rn(2 * D, D, std=0.22)
        v = rn(D, D, std=0.1)
        sd[b + "attn.qkv.weight"] = torch.cat([qk, v], 0)
        sd[b + "attn.qkv.bias"] = rn(3 * D, std=0.05)
        sd[b + "attn.proj.weight"] = rn(D, D, std=0.1)
        sd[b + "attn.proj.bias"] = rn(D, std=0.03)
        sd[b + "norm2.weight"] = rn(D, std=0.1, mean=1.0)
        sd[b + "norm2.bias"] = rn(D, std=0.05)
        sd[b + "mlp.fc1.weight"] = rn(M, D, std=1.0 / math.sqrt(D))
        sd[b + "mlp.fc1.bias"] = rn(M, std=0.05)
        sd[b + "mlp.fc2.weight"] = rn(D, M, std=0.6 / math.sqrt(M))
        sd[b + "mlp.fc2.bias"] = rn(D, std=0.03)
    sd["norm.weight"] = rn(D, std=0.1, mean=1.0)
    sd["norm.bias"] = rn(D, std=0.05)
    if C > 0:
        sd["head.weight"] = rn(C, D, std=0.1)
        sd["head.bias"] = rn(C, std=0.05)
    return {k: exact_round(v).contiguous() for k, v in sd.items()}


def build_model(cfg, sd):
    m = VisionTransformer(cfg["patch"], cfg["dim"], cfg["depth"], cfg["heads"], cfg["mlp"],
                          cfg["grid"], cfg["classes"])
    # cls_token/pos_embed are Parameters; the rest standard modules: strict load
    m.load_state_dict(sd, strict=True)
    return m.double().eval()


# --------------------------------------------------------------------------------------
# safetensors writer (no safetensors package needed)
# --------------------------------------------------------------------------------------

DT = {torch.float32: ("F32", 4), torch.float16: ("F16", 2), torch.bfloat16: ("BF16", 2)}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().astype("<i2").tobytes()
    if t.dtype == torch.float16:
        return t.numpy().astype("<f2").tobytes()
    return t.numpy().astype("<f4").tobytes()


def save_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t in tensors.items():
        data = tensor_bytes(t)
        header[name] = {"dtype": DT[t.dtype][0], "shape": list(t.shape),
                        "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


# --------------------------------------------------------------------------------------
# Checkpoint variants
# --------------------------------------------------------------------------------------


def to_hf(sd, depth):
    """Hugging Face transformers ViTForImageClassification names ("vit." prefix)."""
    D = sd["cls_token"].shape[-1]
    hf = {}
    hf["vit.embeddings.cls_token"] = sd["cls_token"]
    hf["vit.embeddings.position_embeddings"] = sd["pos_embed"]
    hf["vit.embeddings.patch_embeddings.projection.weight"] = sd["patch_embed.proj.weight"]
    hf["vit.embeddings.patch_embeddings.projection.bias"] = sd["patch_embed.proj.bias"]
    for i in range(depth):
        s, d = "blocks.%d." % i, "vit.encoder.layer.%d." % i
        w, b = sd[s + "attn.qkv.weight"], sd[s + "attn.qkv.bias"]
        for j, n in enumerate(["query", "key", "value"]):
            hf[d + "attention.attention.%s.weight" % n] = w[j * D:(j + 1) * D].clone()
            hf[d + "attention.attention.%s.bias" % n] = b[j * D:(j + 1) * D].clone()
        hf[d + "attention.output.dense.weight"] = sd[s + "attn.proj.weight"]
        hf[d + "attention.output.dense.bias"] = sd[s + "attn.proj.bias"]
        hf[d + "layernorm_before.weight"] = sd[s + "norm1.weight"]
        hf[d + "layernorm_before.bias"] = sd[s + "norm1.bias"]
        hf[d + "layernorm_after.weight"] = sd[s + "norm2.weight"]
        hf[d + "layernorm_after.bias"] = sd[s + "norm2.bias"]
        hf[d + "intermediate.dense.weight"] = sd[s + "mlp.fc1.weight"]
        hf[d + "intermediate.dense.bias"] = sd[s + "mlp.fc1.bias"]
        hf[d + "output.dense.weight"] = sd[s + "mlp.fc2.weight"]
        hf[d + "output.dense.bias"] = sd[s + "mlp.fc2.bias"]
    hf["vit.layernorm.weight"] = sd["norm.weight"]
    hf["vit.layernorm.bias"] = sd["norm.bias"]
    if "head.weight" in sd:
        hf["classifier.weight"] = sd["head.weight"]
        hf["classifier.bias"] = sd["head.bias"]
    return hf


def checksums(sd):
    """JSON text {name: [sum x_i, sum x_i * (i % 7 + 1)]} in float64 over the flattened
    tensor: lets the C test check, independently of its own readers, that every tensor
    landed in the right place with the right element order."""
    out = {}
    for k, v in sd.items():
        f = v.double().flatten()
        wgt = (torch.arange(f.numel(), dtype=torch.float64) % 7) + 1
        out[k] = [float(f.sum()), float((f * wgt).sum())]
    return json.dumps(out, separators=(",", ":"))


def write_variants(sd, cfg):
    D = cfg["dim"]
    save_safetensors(os.path.join(OUT, "m1.safetensors"), sd,
                     {"format": "pt", "arch": "m1", "heads": "3", "check": checksums(sd)})
    save_safetensors(os.path.join(OUT, "m1_f16.safetensors"),
                     {k: v.to(torch.float16) for k, v in sd.items()})
    save_safetensors(os.path.join(OUT, "m1_bf16.safetensors"),
                     {k: v.to(torch.bfloat16) for k, v in sd.items()})
    # HF names, stored F16 to keep the committed files small; extra pooler ignored
    hf = to_hf(sd, cfg["depth"])
    g = torch.Generator().manual_seed(77)
    hf["vit.pooler.dense.weight"] = exact_round(torch.randn(D, D, generator=g) * 0.1)
    hf["vit.pooler.dense.bias"] = exact_round(torch.randn(D, generator=g) * 0.1)
    save_safetensors(os.path.join(OUT, "m1_hf.safetensors"),
                     {k: v.to(torch.float16) for k, v in hf.items()}, {"format": "pt"})

    # plain state dict, float32: the common DINO release layout
    torch.save({k: v.clone() for k, v in sd.items()}, os.path.join(OUT, "m1_plain.pth"))
    # nested under state_dict with DataParallel + backbone prefixes, float16 storages
    torch.save({"state_dict": {"module.backbone." + k: v.to(torch.float16) for k, v in sd.items()}},
               os.path.join(OUT, "m1_nested.pth"))
    # DINO training checkpoint: teacher + student (different values) + DINO projection
    # head + non-tensor entries. bfloat16 storages. Student tensors are views (with offsets)
    # into one shared storage, as torch.save keeps shared storages once.
    maxn = max(v.numel() for v in sd.values())
    base = exact_round(torch.randn(maxn + 64, generator=g) * 0.05 + 0.5).to(torch.bfloat16)
    student = {}
    for i, (k, v) in enumerate(sorted(sd.items())):
        off = i % 64
        student["module.backbone." + k] = base[off:off + v.numel()].view(v.shape)
    dino_head = {
        "head.mlp.0.weight": torch.randn(32, D, generator=g) * 0.1,
        "head.mlp.0.bias": torch.randn(32, generator=g) * 0.1,
        "head.mlp.2.weight": torch.randn(16, 32, generator=g) * 0.1,
        "head.mlp.2.bias": torch.randn(16, generator=g) * 0.1,
        "head.last_layer.weight_g": torch.ones(1, 64),
        "head.last_layer.weight_v": torch.randn(64, 16, generator=g) * 0.1,
    }
    teacher = {"backbone." + k: v.to(torch.bfloat16) for k, v in sd.items()}
    teacher.update({k: exact_round(v).to(torch.bfloat16) for k, v in dino_head.items()})
    student.update({"module." + k: exact_round(v).to(torch.bfloat16) for k, v in dino_head.items()})
    torch.save({"student": student, "teacher": teacher, "epoch": 5,
                "optimizer": {"state": {}, "param_groups": [{"lr": 0.0005, "params": [0, 1]}]},
                "args": argparse.Namespace(arch="vit_tiny", patch_size=16)},
               os.path.join(OUT, "m1_teacher.pth"))
    # MAE style: {'model': state_dict} plus decoder tensors and mask_token, bfloat16
    model = {k: v.to(torch.bfloat16) for k, v in sd.items()}
    model["mask_token"] = exact_round(torch.randn(1, 1, 32, generator=g) * 0.02).to(torch.bfloat16)
    model["decoder_pred.weight"] = exact_round(torch.randn(3 * 4 * 4, 32, generator=g) * 0.02).to(torch.bfloat16)
    model["decoder_embed.weight"] = exact_round(torch.randn(32, D, generator=g) * 0.02).to(torch.bfloat16)
    torch.save({"model": model, "epoch": 399}, os.path.join(OUT, "m1_model.pth"))


# --------------------------------------------------------------------------------------
# Golden outputs
# --------------------------------------------------------------------------------------


def golden(model, cfg, B, H, W, seed, path, with_pos=False):
    g = torch.Generator().manual_seed(seed)
    x32 = torch.randn(B, 3, H, W, generator=g)  # float32 pixels, what the C side reads
    with torch.no_grad():
        tokens, attns, cls, logits = model(x32.double())
    out = {"input": x32}
    Np = tokens[0].shape[1] - 1
    roll = None
    for i, (t, a) in enumerate(zip(tokens, attns), start=1):
        out["block%d" % i] = t[:, 1:].float()  # [B][Np][D]
        am = a.mean(dim=1)  # [B][N][N], mean over heads
        out["attn%d" % i] = am[:, 0, 1:].float()  # [B][Np]
        ap = (am + torch.eye(Np + 1, dtype=am.dtype)) / 2
        ap = ap / ap.sum(dim=-1, keepdim=True)
        roll = ap if roll is None else ap @ roll  # A'_i @ ... @ A'_1
        out["rollout%d" % i] = roll[:, 0, 1:].float()
    out["cls"] = cls.float()
    if logits is not None:
        out["logits"] = logits.float()
    if with_pos:
        out["pos_interp"] = model.last_pos[0][0, 1:].float()  # [Np][D]
    meta = {"B": str(B), "H": str(H), "W": str(W), "model": cfg["name"], "heads": str(cfg["heads"]),
            "note": "float64 PyTorch reference (scripts/gen_golden.py), stored as float32"}
    save_safetensors(path, out, meta)
    return out


M1 = dict(name="m1", patch=16, dim=48, heads=3, depth=4, mlp=192, grid=4, classes=10)
M2 = dict(name="m2", patch=8, dim=64, heads=4, depth=3, mlp=256, grid=4, classes=0)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    sd1 = make_weights(M1, 1)
    write_variants(sd1, M1)
    m1 = build_model(M1, sd1)
    golden(m1, M1, 2, 64, 64, 101, os.path.join(OUT, "m1_out.safetensors"))
    o = golden(m1, M1, 2, 96, 80, 102, os.path.join(OUT, "m1_interp_out.safetensors"), with_pos=True)
    assert o["block1"].shape == (2, 30, 48)

    sd2 = make_weights(M2, 2)
    save_safetensors(os.path.join(OUT, "m2.safetensors"), sd2, {"format": "pt", "arch": "m2", "heads": "4"})
    m2 = build_model(M2, sd2)
    o = golden(m2, M2, 2, 48, 40, 103, os.path.join(OUT, "m2_out.safetensors"))
    assert o["block1"].shape == (2, 30, 64)

    total = 0
    for f in sorted(os.listdir(OUT)):
        n = os.path.getsize(os.path.join(OUT, f))
        total += n
        print("%-28s %9d" % (f, n))
    print("total %d bytes" % total)
    a = o["attn1"]
    print("m2 attn1 CLS row: min %.4f max %.4f (uniform %.4f)" % (a.min(), a.max(), 1.0 / 31))


if __name__ == "__main__":
    sys.exit(main())
