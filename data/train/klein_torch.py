"""FLUX.2 [klein] transformer and autoencoder in plain torch, with the
diffusers tensor names (Flux2Transformer2DModel, AutoencoderKLFlux2), for
training small models of the exact architecture.

Checked against ../shared/refs/flux2-mini (computed by diffusers itself) by
check_refs.py; the engine loads what this writes through its normal path.
Works with Debian's python3-torch (1.13) on the CPU.
"""
import json
import math
import struct

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ---- safetensors, read and written here (no extra package needed) ----------

_DT = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32,
       "U8": np.uint8}
_DT_NAME = {np.dtype(v): k for k, v in _DT.items()}


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        if t["dtype"] == "BF16":
            raw = np.frombuffer(data[a:b], dtype=np.uint16).astype(np.uint32) << 16
            arr = raw.view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype=_DT[t["dtype"]])
        out[name] = arr.reshape(t["shape"]).copy()
    return out


def save_safetensors(path, tensors, metadata=None):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name])
        b = arr.tobytes()
        header[name] = {"dtype": _DT_NAME[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    import os
    os.replace(tmp, path)


# ---- transformer ------------------------------------------------------------

def rms_norm(x, w, eps=1e-6):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def layer_norm(x, eps=1e-6):
    return F.layer_norm(x, x.shape[-1:], eps=eps)


def timestep_embedding(t, dim=256):
    """t: [B] sigma; cos first (flip_sin_to_cos), timesteps × 1000."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000) * torch.arange(half, dtype=torch.float32) / half)
    args = (t.float() * 1000)[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def rope_tables(ids, axes_dim, theta):
    """ids: [B, S, 4] → (cos, sin) [B, S, head_dim/2], interleaved pairs."""
    cos, sin = [], []
    for a, d in enumerate(axes_dim):
        k = torch.arange(0, d, 2, dtype=torch.float64) / d
        omega = 1.0 / (theta ** k)
        ang = ids[..., a].double()[..., None] * omega
        cos.append(torch.cos(ang).float())
        sin.append(torch.sin(ang).float())
    return torch.cat(cos, -1), torch.cat(sin, -1)


def apply_rope(x, cos, sin):
    """x: [B, H, S, hd]; pairs (2k, 2k+1) rotated by the angle of k."""
    xr = x.reshape(*x.shape[:-1], -1, 2)
    x0, x1 = xr[..., 0], xr[..., 1]
    c, s = cos[:, None], sin[:, None]
    return torch.stack([x0 * c - x1 * s, x1 * c + x0 * s], -1).flatten(-2)


def attention(q, k, v):
    """[B, H, S, hd] each."""
    w = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1)
    return w @ v


class QuantLinear(nn.Linear):
    """A bias-free linear whose weight can be fake-quantized to binary or
    ternary with one scale per 128 inputs (straight-through estimator), the
    rule `bonsai-image export-release` packs exactly:
      a = bf16(mean |w| over the group);
      binary:  w_q = a · (w ≥ 0 ? +1 : −1)
      ternary: w_q = a · clamp(round(w / a), −1, 1)."""

    def __init__(self, k, n):
        super().__init__(k, n, bias=False)
        self.bits = 0  # 0: full precision

    def quantized_weight(self):
        w = self.weight
        if self.bits == 0:
            return w
        n, k = w.shape
        g = w.reshape(n, k // 128, 128)
        a = g.abs().mean(-1, keepdim=True)
        a = a.to(torch.bfloat16).float()  # the pack stores scales in bf16
        if self.bits == 1:
            q = torch.where(g >= 0, torch.ones_like(g), -torch.ones_like(g))
        else:
            q = torch.clamp(torch.round(g / a.clamp_min(1e-12)), -1, 1)
        wq = (a * q).reshape(n, k)
        return w + (wq - w).detach()

    def forward(self, x):
        return F.linear(x, self.quantized_weight())


def _lin(k, n):
    return nn.Linear(k, n, bias=False)


class DoubleBlockAttn(nn.Module):
    def __init__(self, D, hd):
        super().__init__()
        for name in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"):
            setattr(self, name, QuantLinear(D, D))
        self.to_out = nn.ModuleList([QuantLinear(D, D)])
        self.to_add_out = QuantLinear(D, D)
        for name in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            setattr(self, name, RMSWeight(hd))


class RMSWeight(nn.Module):
    def __init__(self, d):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))


class FeedForward(nn.Module):
    def __init__(self, D, M):
        super().__init__()
        self.linear_in = QuantLinear(D, 2 * M)
        self.linear_out = QuantLinear(M, D)
        self.M = M

    def forward(self, x):
        u = self.linear_in(x)
        return self.linear_out(F.silu(u[..., :self.M]) * u[..., self.M:])


class DoubleBlock(nn.Module):
    def __init__(self, D, H, hd, M):
        super().__init__()
        self.attn = DoubleBlockAttn(D, hd)
        self.ff = FeedForward(D, M)
        self.ff_context = FeedForward(D, M)
        self.H, self.hd = H, hd

    def heads(self, x):
        B, S, _ = x.shape
        return x.view(B, S, self.H, self.hd).transpose(1, 2)

    def forward(self, img, txt, mi, mt, cos, sin):
        a = self.attn
        L = txt.shape[1]
        xi = layer_norm(img) * (1 + mi[1]) + mi[0]
        xt = layer_norm(txt) * (1 + mt[1]) + mt[0]
        qi = rms_norm(self.heads(a.to_q(xi)), a.norm_q.weight)
        ki = rms_norm(self.heads(a.to_k(xi)), a.norm_k.weight)
        vi = self.heads(a.to_v(xi))
        qt = rms_norm(self.heads(a.add_q_proj(xt)), a.norm_added_q.weight)
        kt = rms_norm(self.heads(a.add_k_proj(xt)), a.norm_added_k.weight)
        vt = self.heads(a.add_v_proj(xt))
        q = apply_rope(torch.cat([qt, qi], 2), cos, sin)
        k = apply_rope(torch.cat([kt, ki], 2), cos, sin)
        o = attention(q, k, torch.cat([vt, vi], 2))
        o = o.transpose(1, 2).flatten(2)
        ot, oi = o[:, :L], o[:, L:]
        img = img + mi[2] * a.to_out[0](oi)
        img = img + mi[5] * self.ff(layer_norm(img) * (1 + mi[4]) + mi[3])
        txt = txt + mt[2] * a.to_add_out(ot)
        txt = txt + mt[5] * self.ff_context(layer_norm(txt) * (1 + mt[4]) + mt[3])
        return img, txt


class SingleBlockAttn(nn.Module):
    def __init__(self, D, hd, M):
        super().__init__()
        self.to_qkv_mlp_proj = QuantLinear(D, 3 * D + 2 * M)
        self.to_out = QuantLinear(D + M, D)
        self.norm_q = RMSWeight(hd)
        self.norm_k = RMSWeight(hd)


class SingleBlock(nn.Module):
    def __init__(self, D, H, hd, M):
        super().__init__()
        self.attn = SingleBlockAttn(D, hd, M)
        self.D, self.H, self.hd, self.M = D, H, hd, M

    def forward(self, h, ms, cos, sin):
        a, D, M = self.attn, self.D, self.M
        B, S, _ = h.shape
        u = a.to_qkv_mlp_proj(layer_norm(h) * (1 + ms[1]) + ms[0])
        q, k, v = (u[..., i * D:(i + 1) * D].reshape(B, S, self.H, self.hd).transpose(1, 2)
                   for i in range(3))
        q = apply_rope(rms_norm(q, a.norm_q.weight), cos, sin)
        k = apply_rope(rms_norm(k, a.norm_k.weight), cos, sin)
        o = attention(q, k, v).transpose(1, 2).flatten(2)
        mlp = u[..., 3 * D:]
        act = F.silu(mlp[..., :M]) * mlp[..., M:]
        return h + ms[2] * a.to_out(torch.cat([o, act], -1))


class Named(nn.Module):
    """A container that only gives its children names."""


class Flux2Transformer(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        H, hd = cfg["num_attention_heads"], cfg["attention_head_dim"]
        D = H * hd
        M = int(D * cfg["mlp_ratio"])
        C = cfg["in_channels"]
        self.D = D
        self.x_embedder = _lin(C, D)
        self.context_embedder = _lin(cfg["joint_attention_dim"], D)
        self.time_guidance_embed = Named()
        self.time_guidance_embed.timestep_embedder = Named()
        self.time_guidance_embed.timestep_embedder.linear_1 = _lin(cfg["timestep_guidance_channels"], D)
        self.time_guidance_embed.timestep_embedder.linear_2 = _lin(D, D)
        for name, n in (("double_stream_modulation_img", 6 * D),
                        ("double_stream_modulation_txt", 6 * D),
                        ("single_stream_modulation", 3 * D)):
            m = Named()
            m.linear = _lin(D, n)
            setattr(self, name, m)
        self.transformer_blocks = nn.ModuleList(
            [DoubleBlock(D, H, hd, M) for _ in range(cfg["num_layers"])])
        self.single_transformer_blocks = nn.ModuleList(
            [SingleBlock(D, H, hd, M) for _ in range(cfg["num_single_layers"])])
        self.norm_out = Named()
        self.norm_out.linear = _lin(D, 2 * D)
        self.proj_out = _lin(D, C)

    def quant_linears(self):
        return [m for m in self.modules() if isinstance(m, QuantLinear)]

    def set_bits(self, bits):
        for m in self.quant_linears():
            m.bits = bits

    def forward(self, x, x_ids, t, ctx, ctx_ids):
        """x [B,N,C], x_ids [B,N,4], t [B] sigma, ctx [B,L,J], ctx_ids [B,L,4]."""
        te = self.time_guidance_embed.timestep_embedder
        vec = te.linear_2(F.silu(te.linear_1(timestep_embedding(t))))
        sv = F.silu(vec)[:, None]
        mi = self.double_stream_modulation_img.linear(sv).chunk(6, -1)
        mt = self.double_stream_modulation_txt.linear(sv).chunk(6, -1)
        ms = self.single_stream_modulation.linear(sv).chunk(3, -1)
        img = self.x_embedder(x)
        txt = self.context_embedder(ctx)
        cos, sin = rope_tables(torch.cat([ctx_ids, x_ids], 1),
                               self.cfg["axes_dims_rope"], self.cfg["rope_theta"])
        for b in self.transformer_blocks:
            img, txt = b(img, txt, mi, mt, cos, sin)
        L = txt.shape[1]
        h = torch.cat([txt, img], 1)
        for b in self.single_transformer_blocks:
            h = b(h, ms, cos, sin)
        img = h[:, L:]
        scale, shift = self.norm_out.linear(sv).chunk(2, -1)
        return self.proj_out(layer_norm(img) * (1 + scale) + shift)


# ---- autoencoder ------------------------------------------------------------

class GroupNorm(nn.GroupNorm):
    """Always in float32 (CPU autocast hands it bf16 inputs otherwise)."""

    def forward(self, x):
        return super().forward(x.float())


class ResnetBlock(nn.Module):
    def __init__(self, ci, co, groups):
        super().__init__()
        self.norm1 = GroupNorm(groups, ci, eps=1e-6)
        self.conv1 = nn.Conv2d(ci, co, 3, padding=1)
        self.norm2 = GroupNorm(groups, co, eps=1e-6)
        self.conv2 = nn.Conv2d(co, co, 3, padding=1)
        if ci != co:
            self.conv_shortcut = nn.Conv2d(ci, co, 1)

    def forward(self, x):
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        if hasattr(self, "conv_shortcut"):
            x = self.conv_shortcut(x)
        return x + h


class MidAttention(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.group_norm = GroupNorm(groups, c, eps=1e-6)
        self.to_q = nn.Linear(c, c)
        self.to_k = nn.Linear(c, c)
        self.to_v = nn.Linear(c, c)
        self.to_out = nn.ModuleList([nn.Linear(c, c)])

    def forward(self, x):
        B, C, H, W = x.shape
        h = self.group_norm(x).flatten(2).transpose(1, 2)
        o = attention(self.to_q(h)[:, None], self.to_k(h)[:, None], self.to_v(h)[:, None])[:, 0]
        return x + self.to_out[0](o).transpose(1, 2).reshape(B, C, H, W)


class MidBlock(nn.Module):
    def __init__(self, c, groups):
        super().__init__()
        self.resnets = nn.ModuleList([ResnetBlock(c, c, groups), ResnetBlock(c, c, groups)])
        self.attentions = nn.ModuleList([MidAttention(c, groups)])

    def forward(self, x):
        return self.resnets[1](self.attentions[0](self.resnets[0](x)))


class Downsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, stride=2)

    def forward(self, x):
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Encoder(nn.Module):
    def __init__(self, ch, layers, latent, groups):
        super().__init__()
        self.conv_in = nn.Conv2d(3, ch[0], 3, padding=1)
        self.down_blocks = nn.ModuleList()
        prev = ch[0]
        for i, c in enumerate(ch):
            blk = Named()
            blk.resnets = nn.ModuleList([ResnetBlock(prev if j == 0 else c, c, groups)
                                         for j in range(layers)])
            if i < len(ch) - 1:
                blk.downsamplers = nn.ModuleList([Downsample(c)])
            self.down_blocks.append(blk)
            prev = c
        self.mid_block = MidBlock(ch[-1], groups)
        self.conv_norm_out = GroupNorm(groups, ch[-1], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[-1], 2 * latent, 3, padding=1)

    def forward(self, x):
        x = self.conv_in(x)
        for blk in self.down_blocks:
            for r in blk.resnets:
                x = r(x)
            if hasattr(blk, "downsamplers"):
                x = blk.downsamplers[0](x)
        x = self.mid_block(x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class Decoder(nn.Module):
    def __init__(self, ch, layers, latent, groups):
        super().__init__()
        rch = list(reversed(ch))
        self.conv_in = nn.Conv2d(latent, rch[0], 3, padding=1)
        self.mid_block = MidBlock(rch[0], groups)
        self.up_blocks = nn.ModuleList()
        prev = rch[0]
        for i, c in enumerate(rch):
            blk = Named()
            blk.resnets = nn.ModuleList([ResnetBlock(prev if j == 0 else c, c, groups)
                                         for j in range(layers + 1)])
            if i < len(rch) - 1:
                blk.upsamplers = nn.ModuleList([Upsample(c)])
            self.up_blocks.append(blk)
            prev = c
        self.conv_norm_out = GroupNorm(groups, ch[0], eps=1e-6)
        self.conv_out = nn.Conv2d(ch[0], 3, 3, padding=1)

    def forward(self, z):
        x = self.mid_block(self.conv_in(z))
        for blk in self.up_blocks:
            for r in blk.resnets:
                x = r(x)
            if hasattr(blk, "upsamplers"):
                x = blk.upsamplers[0](x)
        return self.conv_out(F.silu(self.conv_norm_out(x)))


class AutoencoderKLFlux2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        ch, L = cfg["block_out_channels"], cfg["latent_channels"]
        g, n = cfg["norm_num_groups"], cfg["layers_per_block"]
        self.encoder = Encoder(ch, n, L, g)
        self.decoder = Decoder(ch, n, L, g)
        self.quant_conv = nn.Conv2d(2 * L, 2 * L, 1)
        self.post_quant_conv = nn.Conv2d(L, L, 1)
        self.bn = nn.BatchNorm2d(4 * L, eps=cfg["batch_norm_eps"], affine=False,
                                 momentum=None)

    def encode(self, x):
        """Mean and log-variance of the latent, each [B, L, H/8, W/8]."""
        return self.quant_conv(self.encoder(x)).chunk(2, 1)

    def decode(self, z):
        return self.decoder(self.post_quant_conv(z))


def patchify(z):
    """[B, C, H, W] → [B, 4C, H/2, W/2], channel = c·4 + dy·2 + dx."""
    B, C, H, W = z.shape
    z = z.view(B, C, H // 2, 2, W // 2, 2).permute(0, 1, 3, 5, 2, 4)
    return z.reshape(B, C * 4, H // 2, W // 2)


def unpatchify(z):
    B, C4, H, W = z.shape
    z = z.view(B, C4 // 4, 2, 2, H, W).permute(0, 1, 4, 2, 5, 3)
    return z.reshape(B, C4 // 4, H * 2, W * 2)


# ---- state dicts ------------------------------------------------------------

def state_to_numpy(module):
    """diffusers-named float32 arrays (bn's num_batches_tracked as I64)."""
    out = {}
    for k, v in module.state_dict().items():
        a = v.detach().cpu().numpy()
        out[k] = a.astype(np.int64) if k.endswith("num_batches_tracked") else a.astype(np.float32)
    return out


def load_numpy_state(module, arrays):
    sd = module.state_dict()
    missing = [k for k in sd if k not in arrays]
    extra = [k for k in arrays if k not in sd]
    if missing or extra:
        raise ValueError(f"state mismatch: missing {missing[:5]}, unexpected {extra[:5]}")
    module.load_state_dict({k: torch.from_numpy(np.asarray(arrays[k])).reshape(sd[k].shape)
                            for k in sd})
