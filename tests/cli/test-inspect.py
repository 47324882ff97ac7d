#!/usr/bin/env python3
"""`nextstep inspect` on the golden models (counts must equal summary.json)
and on damaged copies of them (must exit non-zero, naming the problem).

Environment: NS_CLI (the nextstep binary), NS_GOLDEN_DIR. Exit 77 = skip."""
import json
import os
import struct
import subprocess
import sys
import tempfile

CLI = os.environ.get("NS_CLI", "")
GOLDEN = os.environ.get("NS_GOLDEN_DIR", "")
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def inspect(model, env=None):
    p = subprocess.run([CLI, "inspect", model, "--json"], capture_output=True, text=True,
                       timeout=300, env=env)
    check(p.returncode >= 0, f"inspect {model} crashed (signal {-p.returncode})")
    try:
        report = json.loads(p.stdout)
    except ValueError:
        report = {}
        check(False, f"inspect {model} --json printed no JSON: {p.stdout[:200]!r} {p.stderr}")
    return p, report


def golden_models(summary):
    for case, info in summary["cases"].items():
        model = os.path.join(GOLDEN, case, "model")
        p, r = inspect(model)
        check(p.returncode == 0, f"{case}: exit {p.returncode}: {p.stderr}")
        check(r.get("problems") == [], f"{case}: problems {r.get('problems')}")
        check(r.get("parameters") == info["model_tensor_elements"],
              f"{case}: parameters {r.get('parameters')} != {info['model_tensor_elements']}")
        check(r.get("tensors") == info["model_tensors"], f"{case}: tensor count")
        check(r.get("dtypes") == info["model_dtypes"], f"{case}: dtypes {r.get('dtypes')}")
        check(r.get("kind") == ("edit" if "edit" in case else "t2i"), f"{case}: kind {r.get('kind')}")
        check(r.get("hidden_size") == info["llm"]["hidden_size"], f"{case}: hidden_size")
        check(r.get("layers") == info["llm"]["num_hidden_layers"], f"{case}: layers")
        check(r.get("vocab_size") == info["vocab_size"], f"{case}: vocab_size")
        for token, tid in info["special_token_ids"].items():
            check(r.get("special_tokens", {}).get(token) == tid, f"{case}: id of {token}")
        vae = r.get("vae", {})
        check(vae.get("parameters") == info["vae_tensor_elements"], f"{case}: VAE parameters")
        check(vae.get("tensors") == info["vae_tensors"], f"{case}: VAE tensors")
        check(vae.get("ch_mult") == info["vae"]["ch_mult"], f"{case}: VAE ch_mult")


def symlink_farm(src_model, dst_root):
    """dst_root/model/* → links to the golden files, dst_root/vae → the golden VAE."""
    model = os.path.join(dst_root, "model")
    os.makedirs(model)
    for name in os.listdir(src_model):
        os.symlink(os.path.join(src_model, name), os.path.join(model, name))
    os.symlink(os.path.join(os.path.dirname(src_model), "vae"), os.path.join(dst_root, "vae"))
    return model


def replace_with_copy(path, text=None, data=None):
    os.unlink(path)
    with open(path, "w" if text is not None else "wb") as f:
        f.write(text if text is not None else data)


def rename_tensor(model, old, new):
    """Renames a tensor in its shard header and in the index."""
    index_path = os.path.join(model, "model.safetensors.index.json")
    with open(index_path) as f:
        index = json.load(f)
    shard = os.path.join(model, index["weight_map"][old])
    with open(shard, "rb") as f:
        blob = f.read()
    n = struct.unpack("<Q", blob[:8])[0]
    header = json.loads(blob[8:8 + n])
    header[new] = header.pop(old)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    replace_with_copy(shard, data=struct.pack("<Q", len(text)) + text + blob[8 + n:])
    index["weight_map"][new] = index["weight_map"].pop(old)
    replace_with_copy(index_path, text=json.dumps(index))


def edit_config(model, **changes):
    path = os.path.join(model, "config.json")
    with open(path) as f:
        cfg = json.load(f)
    cfg.update(changes)
    replace_with_copy(path, text=json.dumps(cfg))


def expect_problem(name, model, needle, env=None):
    p, r = inspect(model, env)
    check(p.returncode not in (0,), f"{name}: exit 0 for a damaged model")
    problems = r.get("problems", [])
    check(any(needle in line for line in problems), f"{name}: no problem names {needle!r}: {problems}")
    check(needle in p.stderr, f"{name}: stderr does not name {needle!r}")
    return r


def damaged_models(tmp):
    src = os.path.join(GOLDEN, "t2i-tiny", "model")
    empty_hub = os.path.join(tmp, "empty-hub")
    os.makedirs(empty_hub)
    env = dict(os.environ, HF_HUB_CACHE=empty_hub)

    model = symlink_farm(src, os.path.join(tmp, "missing-shard"))
    os.unlink(os.path.join(model, "model-00002-of-00003.safetensors"))
    expect_problem("missing shard", model, "model-00002-of-00003.safetensors")

    model = symlink_farm(src, os.path.join(tmp, "renamed"))
    rename_tensor(model, "norm.weight", "final_norm.weight")
    expect_problem("renamed tensor", model, "missing tensor norm.weight")
    expect_problem("renamed tensor", model, "unexpected tensor final_norm.weight")

    model = symlink_farm(src, os.path.join(tmp, "wrong-hidden"))
    with open(os.path.join(src, "config.json")) as f:
        hidden = json.load(f)["hidden_size"]
    edit_config(model, hidden_size=hidden * 2)
    expect_problem("wrong hidden size", model, "norm.weight has shape")

    model = symlink_farm(src, os.path.join(tmp, "qwen2"))
    edit_config(model, model_type="qwen2")
    r = expect_problem("qwen2 config", model, "'qwen2' model, not NextStep")
    elements = json.load(open(os.path.join(GOLDEN, "summary.json")))["cases"]["t2i-tiny"]["model_tensor_elements"]
    check(r.get("parameters") == elements, "qwen2 config: tensors no longer counted")

    model = symlink_farm(src, os.path.join(tmp, "bad-boi"))
    with open(os.path.join(src, "config.json")) as f:
        eoi = json.load(f)["eoi"]
    edit_config(model, boi=eoi)
    expect_problem("boi mismatch", model, "<|begin_of_image|>")

    model = symlink_farm(src, os.path.join(tmp, "no-vae"))
    os.unlink(os.path.join(tmp, "no-vae", "vae"))
    expect_problem("no VAE", model, "NextStep-1-f8ch16-Tokenizer", env)

    model = symlink_farm(src, os.path.join(tmp, "bad-vae"))
    os.unlink(os.path.join(tmp, "bad-vae", "vae"))
    vae = os.path.join(tmp, "bad-vae", "vae")
    os.makedirs(vae)
    os.symlink(os.path.join(GOLDEN, "t2i-tiny", "vae", "config.json"), os.path.join(vae, "config.json"))
    os.symlink(os.path.join(GOLDEN, "edit-tiny", "vae", "checkpoint.pt"), os.path.join(vae, "checkpoint.pt"))
    expect_problem("VAE of another config", model, "checkpoint.pt")

    p = subprocess.run([CLI, "inspect", os.path.join(tmp, "nowhere")], capture_output=True,
                       text=True, timeout=60)
    check(p.returncode not in (0,) and p.returncode > 0, "inspect of a missing folder")
    check("nowhere" in p.stderr, f"missing folder not named: {p.stderr}")


def main():
    if not CLI or not GOLDEN or not os.path.isdir(GOLDEN):
        print("NS_CLI or golden data missing", file=sys.stderr)
        return 77
    with open(os.path.join(GOLDEN, "summary.json")) as f:
        summary = json.load(f)
    golden_models(summary)
    with tempfile.TemporaryDirectory() as tmp:
        damaged_models(tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
