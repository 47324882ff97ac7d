#!/usr/bin/env python3
"""Times the official PyTorch NextStep-1 pipeline on random full-size bf16
weights and prints its speed against `nextstep bench --json`.

Run on the GPU machine, with a snapshot of github.com/stepfun-ai/NextStep-1
(the Aug-2025 layout: nextstep/models/{modeling_nextstep,configuration_nextstep,
modeling_flux_vae,pipeline_nextstep}.py) and its Python requirements
(torch, transformers, diffusers, torchvision):

  nextstep bench --backend cuda --vae /path/to/vae --json > ours-bf16.json
  python3 tests/bench/official-pipeline.py --official /path/to/NextStep-1 \
      --tokenizer /path/to/golden/t2i-tiny/model --ours ours-bf16.json

The tokenizer folder only has to hold a Qwen2 tokenizer with NextStep's added
tokens (the golden tiny models have one); weights are random, the shapes are
the real ones (docs/model.md §2, §6, §11). Not registered as a test: it needs a
GPU, the official code and ~30 GB of GPU memory.

`--tiny CASE` times the same pipeline on a golden tiny model instead
(CASE/model and CASE/vae, e.g. ../shared/golden/t2i-tiny; on the GPU when
there is one, else on the CPU): tests/device/run.sh --cpu rehearses the
device call with it. The libraries are those the golden models were made
with (transformers 4.49, diffusers 0.32); tests/device/pack.sh packs them
for the device, which has torch only: run.sh puts them on PYTHONPATH and
passes `--fallback-path` for the ones the device's own copies may replace.
Modules only the edit path or remote files use (torchvision, megfile) are
stubbed when absent. torch.compile stays off (eager, ENABLE_TORCH_COMPILE=false
unless set): compiling would take most of the device call.

Marked CHECK: names taken from docs/model.md's description of the official
classes, to confirm against the snapshot before trusting the numbers.
"""
import argparse
import json
import os
import sys
import time
import types

# The real NextStep-1.1 / Large shapes (Qwen2.5-14B backbone + heads).
REAL_CONFIG = dict(
    hidden_size=5120, num_hidden_layers=48, num_attention_heads=40, num_key_value_heads=8,
    intermediate_size=13824, vocab_size=152064, max_position_embeddings=32768,
    rms_norm_eps=1e-5, rope_theta=1e6, attention_bias=True, tie_word_embeddings=False,
    latent_channels=16, latent_patch_size=2, latent_size=64, use_gen_pos_embed=False,
    fm_head_dim=1536, fm_head_layers=12,
    # token ids of the golden tokenizer (CHECK: take them from the tokenizer folder's
    # config.json when it differs)
    boi=151667, eoi=151668, image_placeholder_id=151669, pad_token_id=151665,
)
REAL_VAE = dict(resolution=256, in_channels=3, out_ch=3, ch=128, ch_mult=[1, 2, 4, 4],
                num_res_blocks=2, z_channels=16, scaling_factor=1.0, shift_factor=0.0)
DEFAULTS = dict(cfg=7.5, num_sampling_steps=28, timesteps_shift=1.0, use_norm=False)


def stub_missing():
    """Empty stand-ins for imports the text-to-image path never calls."""
    try:
        import torchvision.transforms  # noqa: F401
    except (ImportError, RuntimeError):  # absent, or built for another torch
        transforms = types.ModuleType("torchvision.transforms")
        transforms.Compose = transforms.ToTensor = transforms.Normalize = lambda *a, **k: None
        sys.modules["torchvision"] = types.ModuleType("torchvision")
        sys.modules["torchvision"].transforms = sys.modules["torchvision.transforms"] = transforms
    try:
        import megfile  # noqa: F401
    except ImportError:
        sys.modules["megfile"] = types.ModuleType("megfile")


def build_tiny(case, device, torch):
    from nextstep.models.pipeline_nextstep import NextStepPipeline
    pipe = NextStepPipeline(model_name_or_path=os.path.join(case, "model"),
                            vae_name_or_path=os.path.join(case, "vae"))
    return pipe.to(device, torch.bfloat16)


def build(tokenizer_dir, torch):
    # CHECK: module paths of the Aug-2025 release (commit bfd14b5e); the Feb-2026
    # layout moved them under nextstep/models/nextstep/.
    from nextstep.models.configuration_nextstep import NextStepConfig
    from nextstep.models.modeling_nextstep import NextStep
    from nextstep.models.modeling_flux_vae import AutoEncoderParams, AutoencoderKL
    from nextstep.models.pipeline_nextstep import NextStepPipeline
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir, padding_side="left", use_fast=True)
    torch.set_default_dtype(torch.bfloat16)
    with torch.device("cuda"):
        # Random init straight on the GPU in bf16: no 28 GB host copy.
        model = NextStep(NextStepConfig(**REAL_CONFIG))
        # AutoencoderKL(params) as its from_pretrained builds it (read in the
        # snapshot of modeling_flux_vae.py); CHECK that REAL_VAE's keys are all
        # AutoEncoderParams fields in the snapshot used.
        vae = AutoencoderKL(AutoEncoderParams(**REAL_VAE))
    torch.set_default_dtype(torch.float32)
    # CHECK: NextStepPipeline(tokenizer=, model=, vae=) keyword names.
    return NextStepPipeline(tokenizer=tokenizer, model=model, vae=vae).to("cuda", torch.bfloat16)


def time_generate(pipe, size, torch, repeats):
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    best = float("inf")
    for _ in range(repeats):
        sync()
        t0 = time.perf_counter()
        pipe.generate_image("a photo of a cat", hw=(size, size), seed=42, progress=False,
                            positive_prompt="", negative_prompt="", **DEFAULTS)
        sync()
        best = min(best, time.perf_counter() - t0)
    return best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--official", required=True, help="snapshot of stepfun-ai/NextStep-1")
    ap.add_argument("--tokenizer", help="folder with a NextStep tokenizer (full size)")
    ap.add_argument("--tiny", metavar="CASE", help="time the golden tiny model of CASE instead")
    ap.add_argument("--ours", help="JSON printed by `nextstep bench --backend cuda --json`")
    ap.add_argument("--sizes", help="default 256,512; 64 with --tiny")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--fallback-path", action="append", default=[],
                    help="appended to sys.path: used where the installed packages lack a module")
    args = ap.parse_args()
    if not args.tiny and not args.tokenizer:
        ap.error("give --tokenizer (full size) or --tiny CASE")
    sys.path.insert(0, args.official)
    sys.path += args.fallback_path
    os.environ.setdefault("ENABLE_TORCH_COMPILE", "false")

    import torch
    import transformers
    stub_missing()
    cuda = torch.cuda.is_available()
    if args.tiny:
        pipe = build_tiny(args.tiny, "cuda" if cuda else "cpu", torch)
    elif cuda:
        pipe = build(args.tokenizer, torch)
    else:
        sys.exit("official-pipeline.py: no CUDA device for the full-size pipeline")
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    ours = json.load(open(args.ours)) if args.ours else None
    result = {"device": torch.cuda.get_device_name() if cuda else "cpu",
              "model": args.tiny or "full-size random", "torch": torch.__version__,
              "transformers": transformers.__version__,
              "compile": os.environ["ENABLE_TORCH_COMPILE"], "steps": DEFAULTS["num_sampling_steps"]}
    for size in (int(s) for s in (args.sizes or ("64" if args.tiny else "256,512")).split(",")):
        seconds = time_generate(pipe, size, torch, args.repeats)
        result[f"official_{size}_s"] = seconds
        line = f"official {size}²: {seconds:.2f} s"
        key = f"e2e_{size}_s"
        if ours and key in ours:
            # Ours is the decode + head (+ VAE with --vae) estimate without prefill:
            # a lower bound of our end-to-end time, so the ratio is an upper bound
            # of our speed-up (prefill is tens of ms on an H100).
            result[f"ratio_{size}"] = seconds / ours[key]
            line += f", ours {ours[key]:.1f} s ({ours['weights']}) → {seconds / ours[key]:.1f}× faster"
        print(line)
    if cuda:
        result["official_peak_vram_gb"] = torch.cuda.max_memory_allocated() / 1e9
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
