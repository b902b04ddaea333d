#!/usr/bin/python3
"""
gen_dinov2_golden.py - golden files for the DINOv2 backbones, in tests/data/dinov2/.

Why: DINOv2 differs from the DINO-style ViT of gen_golden.py in four ways that each change
every output: LayerScale (blocks.N.ls1/ls2.gamma), register tokens inserted after CLS
without a positional embedding, the giant's SwiGLU MLP (mlp.w12 -> silu(x1) * x2 -> mlp.w3)
and the way the 37x37 positional table is resampled. This script is an independent float64
PyTorch reference written from facebookresearch/dinov2 (dinov2/models/vision_transformer.py,
dinov2/layers/{block,layer_scale,swiglu_ffn,attention}.py, dinov2/hub/backbones.py) and
transformers' modeling_dinov2.py / modeling_dinov2_with_registers.py:

  official, no registers  F.interpolate(bicubic, scale_factor=(g + 0.1) / 37), no antialias
  official, registers     F.interpolate(bicubic, size=(gh, gw), antialias=True)
                          (hub: interpolate_offset=0.0, interpolate_antialias=True)
  HF Dinov2Model          F.interpolate(bicubic, size=(gh, gw)), no antialias
  HF Dinov2WithRegisters  as the official register models

The weight files are written the way they are published: the official
dinov2_vit*14[_reg4]_pretrain.pth are a flat state_dict saved by torch.save (cls_token
[1,1,D], pos_embed [1,1370,D], mask_token [1,D], register_tokens [1,4,D],
patch_embed.proj, blocks.N.{norm1,attn.qkv,attn.proj,ls1.gamma,norm2,mlp.fc1,mlp.fc2 |
mlp.w12,mlp.w3,ls2.gamma}, norm); the Hugging Face model.safetensors use transformers'
names (embeddings.*, encoder.layer.N.attention.attention.query/key/value, layer_scale1.lambda1,
mlp.weights_in / weights_out, layernorm.*). Tiny sizes keep the files small: D 12, 2 heads,
depth 3, MLP 40 (SwiGLU: int(40 * 2/3) = 26 rounded up to a multiple of 8 = 32), patch 14,
the published 37x37 grid; inputs 448x448 (a 32x32 grid, shrunk) and 168x560 (12x40: shrunk
vertically, enlarged horizontally).

The input pixels are not stored (a 448x448 image would be most of the bytes): pixel i of the
flattened [1][3][H][W] input is ((i * 2654435761 + seed) mod 2^32 >> 8) / 2^23 - 1, exact in
float32, which tests/test_dinov2.c computes the same way.

Outputs per case (safetensors, float32): "block{i}" [1,Np,D] for the blocks in BLOCKS, "attn{depth}" [1,Np] (CLS -> patch attention of the last block, mean over
heads, register columns excluded), "rollout{depth}" [1,Np] (attention rollout through every
block, A' = (A + I) / 2, CLS row, patch columns), "cls" [1,D] (final norm of CLS).

Run:  /usr/bin/python3 scripts/gen_dinov2_golden.py   (or `make golden`). Deterministic.
"""
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

# the DINO-style pieces DINOv2 shares unchanged (pre-norm attention with qkv bias, exact-GELU
# MLP, conv patch embedding) and the safetensors writer
from gen_golden import Attention, Mlp, PatchEmbed, save_safetensors

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "data", "dinov2")
DIM, HEADS, DEPTH, MLP, PATCH, GRID = 12, 2, 3, 40, 14, 37
BLOCKS = (1, 3)


# --------------------------------------------------------------------------------------
# Reference model (dinov2/models/vision_transformer.py, dinov2/layers/*)
# --------------------------------------------------------------------------------------

class SwiGLUFFN(nn.Module):
    """SwiGLUFFNFused: hidden = (int(hidden * 2 / 3) + 7) // 8 * 8."""

    def __init__(self, dim, hidden):
        super().__init__()
        hidden = (int(hidden * 2 / 3) + 7) // 8 * 8
        self.w12 = nn.Linear(dim, 2 * hidden)
        self.w3 = nn.Linear(hidden, dim)

    def forward(self, x):
        x1, x2 = self.w12(x).chunk(2, dim=-1)
        return self.w3(F.silu(x1) * x2)


class Block(nn.Module):
    """dinov2/layers/block.py: x + ls1(attn(norm1(x))), then x + ls2(mlp(norm2(x))); the
    LayerScale modules hold only `gamma` (a ParameterDict keeps the published names)."""

    def __init__(self, dim, heads, mlp, swiglu):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.ls1 = nn.ParameterDict({"gamma": nn.Parameter(torch.ones(dim))})
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = SwiGLUFFN(dim, mlp) if swiglu else Mlp(dim, mlp)
        self.ls2 = nn.ParameterDict({"gamma": nn.Parameter(torch.ones(dim))})

    def forward(self, x):
        y, self.last_attn = self.attn(self.norm1(x))
        x = x + y * self.ls1["gamma"]
        return x + self.mlp(self.norm2(x)) * self.ls2["gamma"]


class DinoV2(nn.Module):
    """interp: 'offset' (official, no registers), 'aa' (registers), 'hf' (HF Dinov2Model)."""

    def __init__(self, n_reg, swiglu, interp):
        super().__init__()
        self.interp = interp
        self.patch_embed = PatchEmbed(PATCH, DIM)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, DIM))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + GRID * GRID, DIM))
        self.register_tokens = nn.Parameter(torch.zeros(1, n_reg, DIM)) if n_reg else None
        self.mask_token = nn.Parameter(torch.zeros(1, DIM))
        self.blocks = nn.ModuleList([Block(DIM, HEADS, MLP, swiglu) for _ in range(DEPTH)])
        self.norm = nn.LayerNorm(DIM, eps=1e-6)

    def pos_for(self, H, W):
        """vision_transformer.py interpolate_pos_encoding: the table as is when the grid has
        as many patches and the input is square, else resampled per self.interp."""
        gh, gw, M = H // PATCH, W // PATCH, GRID
        if gh * gw == M * M and H == W:
            return self.pos_embed
        src = self.pos_embed[:, 1:].reshape(1, M, M, DIM).permute(0, 3, 1, 2)
        if self.interp == "offset":  # scale_factor (g + interpolate_offset) / M
            out = F.interpolate(src, scale_factor=(float(gh + 0.1) / M, float(gw + 0.1) / M),
                                mode="bicubic")
        else:  # size (gh, gw); antialias for the register models
            out = F.interpolate(src, size=(gh, gw), mode="bicubic", align_corners=False,
                                antialias=self.interp == "aa")
        assert (gh, gw) == tuple(out.shape[-2:])
        return torch.cat((self.pos_embed[:, :1], out.permute(0, 2, 3, 1).reshape(1, -1, DIM)), dim=1)

    def forward(self, x):
        B, _, H, W = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.pos_for(H, W)
        R = 0
        if self.register_tokens is not None:
            R = self.register_tokens.shape[1]
            x = torch.cat((x[:, :1], self.register_tokens.expand(B, -1, -1), x[:, 1:]), dim=1)
        outs, roll = {}, None
        for i, blk in enumerate(self.blocks, start=1):
            x = blk(x)
            if i in BLOCKS:
                outs["block%d" % i] = x[:, 1 + R:]
            a = blk.last_attn.mean(dim=1)  # [B][Nt][Nt], mean over heads
            ap = (a + torch.eye(a.shape[-1], dtype=a.dtype)) / 2  # rollout: A' = (A + I) / 2
            roll = ap if roll is None else ap @ roll
        outs["attn%d" % DEPTH] = a[:, 0, 1 + R:]
        outs["rollout%d" % DEPTH] = roll[:, 0, 1 + R:]
        outs["cls"] = self.norm(x)[:, 0]
        return outs


# --------------------------------------------------------------------------------------
# Weights, files
# --------------------------------------------------------------------------------------

def make_weights(seed, n_reg, swiglu):
    """Official names and shapes, float32, seeded."""
    g = torch.Generator().manual_seed(seed)

    def rn(*shape, std=1.0, mean=0.0):
        return (torch.randn(*shape, generator=g) * std + mean).float()

    def ru(*shape, lo, hi):
        return (torch.rand(*shape, generator=g) * (hi - lo) + lo).float()

    D = DIM
    sd = {
        "cls_token": rn(1, 1, D, std=0.5),
        "pos_embed": rn(1, 1 + GRID * GRID, D, std=0.5),
    }
    if n_reg:
        sd["register_tokens"] = rn(1, n_reg, D, std=0.5)
    sd["mask_token"] = rn(1, D, std=0.1)
    sd["patch_embed.proj.weight"] = rn(D, 3, PATCH, PATCH, std=(3 * PATCH * PATCH) ** -0.5)
    sd["patch_embed.proj.bias"] = rn(D, std=0.1)
    H = (int(MLP * 2 / 3) + 7) // 8 * 8
    for b in range(DEPTH):
        p = "blocks.%d." % b
        sd[p + "norm1.weight"] = ru(D, lo=0.7, hi=1.3)
        sd[p + "norm1.bias"] = rn(D, std=0.05)
        sd[p + "attn.qkv.weight"] = rn(3 * D, D, std=D ** -0.5)
        sd[p + "attn.qkv.bias"] = rn(3 * D, std=0.05)
        sd[p + "attn.proj.weight"] = rn(D, D, std=D ** -0.5)
        sd[p + "attn.proj.bias"] = rn(D, std=0.05)
        sd[p + "ls1.gamma"] = ru(D, lo=0.05, hi=1.5)
        sd[p + "norm2.weight"] = ru(D, lo=0.7, hi=1.3)
        sd[p + "norm2.bias"] = rn(D, std=0.05)
        if swiglu:
            sd[p + "mlp.w12.weight"] = rn(2 * H, D, std=D ** -0.5)
            sd[p + "mlp.w12.bias"] = rn(2 * H, std=0.05)
            sd[p + "mlp.w3.weight"] = rn(D, H, std=H ** -0.5)
            sd[p + "mlp.w3.bias"] = rn(D, std=0.05)
        else:
            sd[p + "mlp.fc1.weight"] = rn(MLP, D, std=D ** -0.5)
            sd[p + "mlp.fc1.bias"] = rn(MLP, std=0.05)
            sd[p + "mlp.fc2.weight"] = rn(D, MLP, std=MLP ** -0.5)
            sd[p + "mlp.fc2.bias"] = rn(D, std=0.05)
        sd[p + "ls2.gamma"] = ru(D, lo=0.05, hi=1.5)
    sd["norm.weight"] = ru(D, lo=0.7, hi=1.3)
    sd["norm.bias"] = rn(D, std=0.05)
    return sd


def build(sd, n_reg, swiglu, interp):
    m = DinoV2(n_reg, swiglu, interp)
    m.load_state_dict(sd, strict=True)  # the names and shapes of the published files
    return m.double().eval()


def to_hf(sd):
    """transformers' Dinov2Model / Dinov2WithRegistersModel names (convert_dinov2_to_hf.py)."""
    out = {}
    top = {"cls_token": "embeddings.cls_token", "pos_embed": "embeddings.position_embeddings",
           "mask_token": "embeddings.mask_token", "register_tokens": "embeddings.register_tokens",
           "patch_embed.proj.weight": "embeddings.patch_embeddings.projection.weight",
           "patch_embed.proj.bias": "embeddings.patch_embeddings.projection.bias",
           "norm.weight": "layernorm.weight", "norm.bias": "layernorm.bias"}
    sub = {"attn.proj.": "attention.output.dense.", "ls1.gamma": "layer_scale1.lambda1",
           "ls2.gamma": "layer_scale2.lambda1", "mlp.w12.": "mlp.weights_in.",
           "mlp.w3.": "mlp.weights_out.", "norm1.": "norm1.", "norm2.": "norm2.",
           "mlp.fc1.": "mlp.fc1.", "mlp.fc2.": "mlp.fc2."}
    for k, v in sd.items():
        if k in top:
            out[top[k]] = v
            continue
        _, b, rest = k.split(".", 2)
        p = "encoder.layer.%s." % b
        if rest.startswith("attn.qkv."):
            kind = rest.split(".")[-1]
            for i, n in enumerate(("query", "key", "value")):
                out[p + "attention.attention.%s.%s" % (n, kind)] = v.chunk(3, dim=0)[i].contiguous()
            continue
        for a, c in sub.items():
            if rest.startswith(a):
                out[p + c + rest[len(a):]] = v
                break
        else:
            raise KeyError(k)
    return out


def pixels(H, W, seed):
    i = torch.arange(3 * H * W, dtype=torch.int64)
    h = (i * 2654435761 + seed) % (1 << 32)
    return ((h >> 8).double() / (1 << 23) - 1.0).reshape(1, 3, H, W)


def golden(model, H, W, seed, path, name):
    with torch.no_grad():
        outs = model(pixels(H, W, seed))
    out = {k: v.float() for k, v in outs.items()}
    save_safetensors(path, out, {"H": str(H), "W": str(W), "seed": str(seed), "model": name,
                                 "note": "float64 PyTorch reference (scripts/gen_dinov2_golden.py)"})


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(0)
    cases = [  # name, seed, registers, swiglu
        ("vits14", 21, 0, False),       # dinov2_vits14_pretrain.pth layout
        ("vits14_reg4", 22, 4, False),  # dinov2_vits14_reg4_pretrain.pth layout
        ("vitg14_reg4", 23, 4, True),   # dinov2_vitg14_reg4_pretrain.pth layout (SwiGLU)
    ]
    for name, seed, n_reg, swiglu in cases:
        sd = make_weights(seed, n_reg, swiglu)
        torch.save(sd, os.path.join(OUT, "dinov2_%s_pretrain.pth" % name))
        interp = "aa" if n_reg else "offset"
        m = build(sd, n_reg, swiglu, interp)
        golden(m, 448, 448, seed * 10 + 1, os.path.join(OUT, "%s_448.safetensors" % name), name)
        golden(m, 168, 560, seed * 10 + 2, os.path.join(OUT, "%s_168x560.safetensors" % name), name)
        if name == "vits14":  # HF Dinov2Model: same weights, exact-size interpolation
            save_safetensors(os.path.join(OUT, "hf_%s.safetensors" % name), to_hf(sd),
                             {"format": "pt"})
            mh = build(sd, n_reg, swiglu, "hf")
            golden(mh, 448, 448, seed * 10 + 1, os.path.join(OUT, "hf_%s_448.safetensors" % name), name)
            golden(mh, 168, 560, seed * 10 + 2,
                   os.path.join(OUT, "hf_%s_168x560.safetensors" % name), name)
        if name == "vitg14_reg4":  # HF Dinov2WithRegistersModel: same semantics as official
            save_safetensors(os.path.join(OUT, "hf_%s.safetensors" % name), to_hf(sd),
                             {"format": "pt"})
    sizes = [os.path.getsize(os.path.join(OUT, f)) for f in os.listdir(OUT)]
    print("%s: %d files, %d bytes" % (OUT, len(sizes), sum(sizes)))


if __name__ == "__main__":
    sys.exit(main())
