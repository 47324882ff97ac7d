#!/usr/bin/env python3
"""CPU: one decode layer-step and one FM-head step, official PyTorch vs
`nextstep bench`, measured in one run on the same machine, as ratios.

The official pipeline cannot run whole on a machine whose RAM is smaller than
its 28 GB of bf16 weights, so this compares at the level `nextstep bench`
measures, on random weights at the real NextStep-1.1 shapes (docs/model.md):

- decode layer-step: transformers' `Qwen2DecoderLayer` (hidden 5120, 40 heads,
  8 KV heads, head_dim 128, intermediate 13824, q/k/v bias, RMSNorm eps 1e-5,
  RoPE theta 1e6, SDPA attention), 2 rows (CFG), one new position at 256 with
  a `DynamicCache` holding 256 positions (reset to 256 after each timed
  call, outside the timer). RoPE cos/sin are computed once outside the timer
  (the model computes them once per token for all 48 layers).
- FM-head step: the official `SimpleMLPAdaLN` (`image_head.net`: input_proj,
  time embedding, cond_embed, 12 ResBlocks with affine `in_ln` + adaLN, final
  layer with LayerNorm without affine) imported at run time from a snapshot of
  github.com/stepfun-ai/NextStep-1 (never copied here), eager
  (ENABLE_TORCH_COMPILE=false), called as its `sample()` calls it:
  net(x bf16 [2,64], t bf16 [2], c bf16 [2,5120]). When the snapshot or its
  imports are missing, a re-statement of the same class in this file is used
  and the output says so ("head_impl": "restated"). "head step, per token"
  adds 1/steps of the once-a-token condition (final RMSNorm +
  image_out_projector 5120→5120), which is what our head_ms_per_token/steps
  contains (ours also does cond_embed and every step's adaLN once a token).
- int8: weight-only, per-output-row absmax scale (amax/127, round half to
  even, clamp ±127), the same codes as `nextstep convert --weights int8`, on
  every linear of at least 1 Mi elements (as ours); run by
  `torch._weight_int8pack_mm` (PyTorch's CPU weight-only int8 GEMM, the op
  torchao's int8 weight-only CPU path uses; bf16 activations, bf16 scales).
  `torch.ao.quantization.quantize_dynamic` is not an equivalent (it also
  quantizes activations, and only float32 modules) and is not measured.

Ours: `nextstep bench --weights bf16|int8 --layers 2 --tokens 3 --threads N
--json`, per layer-step = backbone_ms_per_token / layers_measured, per head
step = head_ms_per_token / steps. Each (threads, weights) case runs ours and
PyTorch back to back, `--rounds` times alternating; medians are reported.
Ratio = PyTorch ms / ours ms (> 1: ours is faster).

Install (PyPI only; the torch wheel pulls the CUDA libraries, ~5.6 GB in all;
it runs on the CPU without a GPU):

  python3 -m venv /var/tmp/torch-venv
  /var/tmp/torch-venv/bin/pip install torch transformers safetensors
  /var/tmp/torch-venv/bin/pip install loguru pendulum pyyaml   # the official head's imports

Run (the snapshot: a checkout of stepfun-ai/NextStep-1, or its bare git dir):

  meson setup /tmp/b-torch -Dplugin=disabled -Dcuda=disabled
  ninja -C /tmp/b-torch engine/cli/nextstep
  /var/tmp/torch-venv/bin/python tests/bench/torch-cpu-step.py \\
      --nextstep /tmp/b-torch/engine/cli/nextstep --official /path/to/NextStep-1

Exits 77 when torch or transformers is not installed. Not a registered test.
"""
import argparse
import copy
import inspect
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HIDDEN, HEADS, KV_HEADS, HEAD_DIM, INTER = 5120, 40, 8, 128, 13824
FM_DIM, FM_LAYERS, TOKEN_DIM = 1536, 12, 64
ROWS, KV = 2, 256
QUANT_MIN_ELEMENTS = 1 << 20          # ours: NS_QUANT_MIN_ELEMENTS

try:
    import torch
    from torch import nn
    import transformers
    from transformers import DynamicCache, Qwen2Config
    from transformers.models.qwen2.modeling_qwen2 import (Qwen2DecoderLayer, Qwen2RMSNorm,
                                                          Qwen2RotaryEmbedding)
except ImportError as e:
    print(f"torch-cpu-step.py: skipped: {e}. Install with:\n"
          "  python3 -m venv /var/tmp/torch-venv\n"
          "  /var/tmp/torch-venv/bin/pip install torch transformers safetensors loguru pendulum pyyaml\n"
          "and run this script with /var/tmp/torch-venv/bin/python", file=sys.stderr)
    sys.exit(77)


# ---- the FM head ----------------------------------------------------------------

def restated_head_class():
    """SimpleMLPAdaLN of nextstep/models/modeling_fm_head.py, re-stated (used
    only when the official snapshot cannot be imported)."""
    import math

    def modulate(x, shift, scale):
        return x * (1 + scale) + shift

    class TimestepEmbedder(nn.Module):
        def __init__(self, hidden, freq=256):
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(freq, hidden), nn.SiLU(), nn.Linear(hidden, hidden))
            self.freq = freq

        def forward(self, t):
            half = self.freq // 2
            freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32) / half)
            args = t[:, None].float() * freqs[None]
            emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
            return self.mlp(emb.to(self.mlp[0].weight.dtype))

    class ResBlock(nn.Module):
        def __init__(self, ch):
            super().__init__()
            self.in_ln = nn.LayerNorm(ch, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(ch, ch), nn.SiLU(), nn.Linear(ch, ch))
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(ch, 3 * ch))

        def forward(self, x, y):
            shift, scale, gate = self.adaLN_modulation(y).chunk(3, dim=-1)
            return x + gate * self.mlp(modulate(self.in_ln(x), shift, scale))

    class FinalLayer(nn.Module):
        def __init__(self, ch, out):
            super().__init__()
            self.norm_final = nn.LayerNorm(ch, elementwise_affine=False, eps=1e-6)
            self.linear = nn.Linear(ch, out)
            self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(ch, 2 * ch))

        def forward(self, x, c):
            shift, scale = self.adaLN_modulation(c).chunk(2, dim=-1)
            return self.linear(modulate(self.norm_final(x), shift, scale))

    class SimpleMLPAdaLN(nn.Module):
        def __init__(self, input_dim, cond_dim, dim=1536, layers=12, mlp_ratio=1.0):
            super().__init__()
            self.time_embed = TimestepEmbedder(dim)
            self.cond_embed = nn.Linear(cond_dim, dim)
            self.input_proj = nn.Linear(input_dim, dim)
            self.res_blocks = nn.ModuleList(ResBlock(dim) for _ in range(layers))
            self.final_layer = FinalLayer(dim, input_dim)

        def forward(self, x, t, c):
            x = self.input_proj(x)
            y = self.time_embed(t) + self.cond_embed(c)
            for block in self.res_blocks:
                x = block(x, y)
            return self.final_layer(x, y)

    return SimpleMLPAdaLN


def official_head_class(official, workdir):
    """SimpleMLPAdaLN from the snapshot: a folder with nextstep/models/, or a
    (bare) git dir, whose nextstep/ is extracted into workdir."""
    root = official
    if not os.path.isfile(os.path.join(official, "nextstep", "models", "modeling_fm_head.py")):
        git = subprocess.run(["git", "--git-dir", official, "archive", "HEAD", "nextstep"],
                             capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", workdir], input=git, check=True)
        root = workdir
        commit = subprocess.run(["git", "--git-dir", official, "rev-parse", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    else:
        commit = subprocess.run(["git", "-C", official, "rev-parse", "HEAD"],
                                capture_output=True, text=True).stdout.strip()
    os.environ["ENABLE_TORCH_COMPILE"] = "false"     # eager; read at import
    sys.path.insert(0, root)
    from nextstep.models.modeling_fm_head import SimpleMLPAdaLN
    return SimpleMLPAdaLN, commit or "unknown"


# ---- int8 weight-only -----------------------------------------------------------

class Int8WeightOnlyLinear(nn.Module):
    """y = x · (q · scale)ᵀ + b through torch._weight_int8pack_mm."""

    def __init__(self, lin):
        super().__init__()
        w = lin.weight.detach().float()
        scale = w.abs().amax(dim=1) / 127.0
        scale = torch.where(scale > 0, scale, torch.ones_like(scale))
        self.register_buffer("q", torch.round(w / scale[:, None]).clamp(-127, 127)
                             .to(torch.int8).contiguous())
        self.register_buffer("scale", scale.to(lin.weight.dtype))
        self.bias = None if lin.bias is None else nn.Parameter(lin.bias.detach().clone(),
                                                               requires_grad=False)

    def forward(self, x):
        shape = x.shape
        y = torch._weight_int8pack_mm(x.reshape(-1, shape[-1]).contiguous(), self.q, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.reshape(*shape[:-1], y.shape[-1])


def quantize_int8(module):
    m = copy.deepcopy(module)
    for name, child in list(m.named_modules()):
        for cname, sub in list(child.named_children()):
            if isinstance(sub, nn.Linear) and sub.weight.numel() >= QUANT_MIN_ELEMENTS:
                setattr(child, cname, Int8WeightOnlyLinear(sub))
    return m


# ---- models --------------------------------------------------------------------

def qwen2_config():
    cfg = Qwen2Config(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=HEADS,
                      num_key_value_heads=KV_HEADS, head_dim=HEAD_DIM, intermediate_size=INTER,
                      rms_norm_eps=1e-5, rope_theta=1e6, max_position_embeddings=32768,
                      vocab_size=152064, use_sliding_window=False, hidden_act="silu",
                      attn_implementation="sdpa")
    cfg._attn_implementation = "sdpa"
    return cfg


def build_layer(cfg):
    torch.manual_seed(1)
    layer = Qwen2DecoderLayer(cfg, layer_idx=0).eval()
    for name, p in layer.named_parameters():
        p.requires_grad_(False)
        if name.endswith("bias"):          # the q/k/v biases (norm weights stay 1)
            p.normal_(0.0, 0.02)
    rope = Qwen2RotaryEmbedding(config=cfg)
    x = torch.randn(ROWS, 1, HIDDEN)
    pos = torch.full((ROWS, 1), KV, dtype=torch.long)
    cos_sin = rope(x, pos)
    k0 = torch.randn(ROWS, KV_HEADS, KV, HEAD_DIM)
    v0 = torch.randn(ROWS, KV_HEADS, KV, HEAD_DIM)
    return layer, x, pos, cos_sin, k0, v0


class LayerStep:
    """One decode step through `layer` against a DynamicCache of KV positions."""

    def __init__(self, layer, x, pos, cos_sin, k0, v0):
        self.layer, self.x, self.pos, self.cos_sin, self.k0, self.v0 = layer, x, pos, cos_sin, k0, v0
        params = inspect.signature(Qwen2DecoderLayer.forward).parameters
        self.cache_kw = "cache" if "cache" in params else "past_key_values"
        self.reset()

    def reset(self):
        self.cache = DynamicCache()
        self.cache.update(self.k0, self.v0, 0)

    def __call__(self):
        out = self.layer(self.x, attention_mask=None, position_ids=self.pos,
                         use_cache=True, position_embeddings=self.cos_sin,
                         **{self.cache_kw: self.cache})
        assert self.cache.get_seq_length(0) == KV + 1
        return out[0] if isinstance(out, tuple) else out


def build_head(cls):
    torch.manual_seed(2)
    net = cls(input_dim=TOKEN_DIM, cond_dim=HIDDEN, dim=FM_DIM, layers=FM_LAYERS, mlp_ratio=1.0)
    net = net.to(torch.bfloat16).eval()
    for p in net.parameters():             # the official init zeroes adaLN / final
        p.requires_grad_(False)
        p.normal_(0.0, 0.02)
    x = torch.randn(ROWS, TOKEN_DIM, dtype=torch.bfloat16)
    t = torch.full((ROWS,), 0.3, dtype=torch.bfloat16)
    c = torch.randn(ROWS, HIDDEN, dtype=torch.bfloat16)
    return net, x, t, c


def build_cond(cfg):
    """Once a token: final RMSNorm + image_out_projector (5120 → 5120, bias)."""
    torch.manual_seed(3)
    norm = Qwen2RMSNorm(HIDDEN, eps=cfg.rms_norm_eps).to(torch.bfloat16)
    proj = nn.Linear(HIDDEN, HIDDEN).to(torch.bfloat16)
    for p in list(norm.parameters()) + list(proj.parameters()):
        p.requires_grad_(False)
    proj.weight.normal_(0.0, 0.02)
    return nn.Sequential(norm, proj).eval(), torch.randn(ROWS, HIDDEN, dtype=torch.bfloat16)


# ---- timing ----------------------------------------------------------------------

def timed(fn, reset, warmup, repeats):
    """Median wall and CPU ms of fn() (reset() runs after each, untimed)."""
    wall, cpu = [], []
    with torch.inference_mode():
        for i in range(warmup + repeats):
            t0, c0 = time.perf_counter(), time.process_time()
            fn()
            t1, c1 = time.perf_counter(), time.process_time()
            if i >= warmup:
                wall.append((t1 - t0) * 1e3)
                cpu.append((c1 - c0) * 1e3)
            if reset:
                reset()
    return statistics.median(wall), statistics.median(cpu)


def torch_case(models, weights, threads, steps, warmup, repeats):
    torch.set_num_threads(threads)
    layer_step, (net, hx, ht, hc), (cond, ch) = models[weights]
    layer_ms, layer_cpu = timed(layer_step, layer_step.reset, warmup, repeats)
    head_ms, head_cpu = timed(lambda: net(hx, ht, hc), None, warmup, repeats)
    cond_ms, _ = timed(lambda: cond(ch), None, warmup, repeats)
    return {"layer_ms": layer_ms, "layer_cpu_ms": layer_cpu, "head_step_ms": head_ms,
            "head_step_cpu_ms": head_cpu, "cond_ms": cond_ms,
            "head_ms": head_ms + cond_ms / steps}


def ours_case(nextstep, weights, threads, layers, tokens):
    cmd = [nextstep, "bench", "--weights", weights, "--layers", str(layers), "--tokens",
           str(tokens), "--threads", str(threads), "--json"]
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f"torch-cpu-step.py: {' '.join(cmd)} failed:\n{p.stderr}")
    j = json.loads(p.stdout[p.stdout.index("{"):])
    return {"layer_ms": j["backbone_ms_per_token"] / j["layers_measured"],
            "head_ms": j["head_ms_per_token"] / j["steps"], "read_gbs": j["read_gbs"],
            "steps": j["steps"], "command": " ".join(cmd)}


def machine():
    model = "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": model, "cores": os.cpu_count(), "load": list(os.getloadavg()),
            "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "torch": torch.__version__, "transformers": transformers.__version__,
            "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "python": platform.python_version()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--nextstep", help="our CLI (without it only PyTorch is timed)")
    ap.add_argument("--official", default="/work/.mirror/stepfun-ai+NextStep-1/repo",
                    help="snapshot of stepfun-ai/NextStep-1: a checkout or a git dir")
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--weights", default="bf16,int8")
    ap.add_argument("--rounds", type=int, default=2, help="ours/PyTorch alternations per case")
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--layers", type=int, default=2, help="layers for `nextstep bench`")
    ap.add_argument("--tokens", type=int, default=3, help="tokens for `nextstep bench`")
    ap.add_argument("--steps", type=int, default=28, help="head steps a token (NextStep-1.1)")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    info = machine()
    workdir = tempfile.mkdtemp(prefix="torch-cpu-step-")
    try:
        try:
            head_cls, commit = official_head_class(args.official, workdir)
            info["head_impl"] = f"official SimpleMLPAdaLN, stepfun-ai/NextStep-1 {commit}, eager"
        except Exception as e:             # no snapshot, or its imports missing
            print(f"note: official head not importable ({type(e).__name__}: {e}); "
                  "using the re-statement in this script", file=sys.stderr)
            head_cls = restated_head_class()
            info["head_impl"] = "restated (this script's copy of SimpleMLPAdaLN), eager"
        info["layer_impl"] = (f"transformers {transformers.__version__} Qwen2DecoderLayer, "
                              "sdpa, DynamicCache")
        torch.set_default_dtype(torch.bfloat16)
        cfg = qwen2_config()
        layer, x, pos, cos_sin, k0, v0 = build_layer(cfg)
        head = build_head(head_cls)
        cond = build_cond(cfg)
        torch.set_default_dtype(torch.float32)
        weights = args.weights.split(",")
        models = {"bf16": (LayerStep(layer, x, pos, cos_sin, k0, v0), head, cond)}
        if "int8" in weights:
            net8 = quantize_int8(head[0])
            models["int8"] = (LayerStep(quantize_int8(layer), x, pos, cos_sin, k0, v0),
                              (net8,) + head[1:], (quantize_int8(cond[0]), cond[1]))
            with torch.inference_mode():   # sanity: the int8 path computes the same thing
                a, b = models["bf16"][0](), models["int8"][0]()
                models["bf16"][0].reset(), models["int8"][0].reset()
                info["int8_layer_rel_err"] = float((a.float() - b.float()).norm() / a.float().norm())
                a, b = head[0](*head[1:]), net8(*head[1:])
                info["int8_head_rel_err"] = float((a.float() - b.float()).norm() / a.float().norm())
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    results = []
    for threads in (int(t) for t in args.threads.split(",")):
        for w in weights:
            ours, theirs = [], []
            for _ in range(args.rounds):
                if args.nextstep:
                    ours.append(ours_case(args.nextstep, w, threads, args.layers, args.tokens))
                theirs.append(torch_case(models, w, threads, args.steps, args.warmup,
                                         args.repeats))
            med = lambda rows, k: statistics.median(r[k] for r in rows)
            r = {"threads": threads, "weights": w,
                 "torch": {k: med(theirs, k) for k in theirs[0]}}
            if ours:
                r["ours"] = {k: med(ours, k) for k in ("layer_ms", "head_ms", "read_gbs")}
                r["ours"]["command"] = ours[0]["command"]
                r["layer_ratio"] = r["torch"]["layer_ms"] / r["ours"]["layer_ms"]
                r["head_ratio"] = r["torch"]["head_ms"] / r["ours"]["head_ms"]
            results.append(r)
            print(json.dumps(r), flush=True)
    info["load_after"] = list(os.getloadavg())

    print(f"\n{info['date']}  {info['cpu']} ({info['cores']} CPUs), load {info['load'][0]:.2f} "
          f"before, {info['load_after'][0]:.2f} after; torch {info['torch']} "
          f"({info['torch_cpu_capability']}), transformers {info['transformers']}")
    print(f"layer: {info['layer_impl']}; head: {info['head_impl']}")
    if "int8_layer_rel_err" in info:
        print(f"int8 vs bf16 (relative L2): layer {info['int8_layer_rel_err']:.4f}, "
              f"head {info['int8_head_rel_err']:.4f}")
    print("| threads | weights | layer-step ours | PyTorch | ratio | head step ours | PyTorch "
          "(step + cond/steps) | ratio | PyTorch CPU ms (layer / head step) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in results:
        t, o = r["torch"], r.get("ours")
        fmt = lambda v: f"{v:.1f} ms" if v is not None else "–"
        ratio = lambda k: f"{r[k]:.2f}×" if k in r else "–"
        print(f"| {r['threads']} | {r['weights']} | {fmt(o and o['layer_ms'])} | "
              f"{fmt(t['layer_ms'])} | {ratio('layer_ratio')} | {fmt(o and o['head_ms'])} | "
              f"{fmt(t['head_ms'])} ({t['head_step_ms']:.1f} + {t['cond_ms']:.1f}/{args.steps}) | "
              f"{ratio('head_ratio')} | {t['layer_cpu_ms']:.1f} / {t['head_step_cpu_ms']:.1f} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"machine": info, "results": results}, f, indent=2)


if __name__ == "__main__":
    main()
