#!/usr/bin/env python3
"""`nextstep make-tiny`: the model it writes passes `nextstep inspect`, is the
same for the same seed, has the published layout, and its tokenizer mirrors
the golden tokenizer's structure with ids matching config.json.

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


def run(*args):
    p = subprocess.run([CLI, *args], capture_output=True, text=True, timeout=300)
    check(p.returncode >= 0, f"{args} crashed")
    return p


def make(out, *extra):
    p = run("make-tiny", out, *extra)
    check(p.returncode == 0, f"make-tiny {out} {extra}: exit {p.returncode}: {p.stderr}")


def inspect(model):
    p = run("inspect", model, "--json")
    check(p.returncode == 0, f"inspect {model}: exit {p.returncode}: {p.stderr}")
    try:
        return json.loads(p.stdout)
    except ValueError:
        check(False, f"inspect {model}: no JSON")
        return {}


def shard_elements(model):
    """Elements in every shard, read from the safetensors headers."""
    total = 0
    names = [n for n in os.listdir(model) if n.endswith(".safetensors")]
    for name in names:
        with open(os.path.join(model, name), "rb") as f:
            n = struct.unpack("<Q", f.read(8))[0]
            header = json.loads(f.read(n))
        for key, t in header.items():
            if key != "__metadata__":
                count = 1
                for d in t["shape"]:
                    count *= d
                total += count
    return total, len(names)


def all_files(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            with open(path, "rb") as f:
                out[os.path.relpath(path, root)] = f.read()
    return out


def check_model(model, kind):
    r = inspect(model)
    check(r.get("kind") == kind, f"{model}: kind {r.get('kind')} != {kind}")
    check(r.get("problems") == [], f"{model}: problems {r.get('problems')}")
    elements, shards = shard_elements(model)
    check(shards >= 2, f"{model}: {shards} shard(s)")
    check(r.get("parameters") == elements, f"{model}: parameters {r.get('parameters')} != {elements}")
    check(list(r.get("dtypes", {})) == ["BF16"], f"{model}: dtypes {r.get('dtypes')}")
    with open(os.path.join(model, "config.json")) as f:
        cfg = json.load(f)
    check(cfg["model_type"] == "nextstep", "model_type")
    ids = r.get("special_tokens", {})
    for field, token in (("boi", "<|begin_of_image|>"), ("eoi", "<|end_of_image|>"),
                         ("image_placeholder_id", "<|image_placeholder|>"),
                         ("pad_token_id", "[PAD]"), ("bos_token_id", "<|endoftext|>"),
                         ("eos_token_id", "<|endoftext|>")):
        check(cfg.get(field) is not None and cfg.get(field) == ids.get(token),
              f"{model}: config {field} {cfg.get(field)} != tokenizer {token} {ids.get(token)}")
    check(max(ids.values(), default=0) < cfg["vocab_size"], f"{model}: ids beyond vocab_size")
    return r


def check_tokenizer_structure(model):
    with open(os.path.join(GOLDEN, "tokenizer", "tokenizer.json")) as f:
        gold = json.load(f)
    with open(os.path.join(model, "tokenizer.json")) as f:
        ours = json.load(f)
    check(list(ours) == list(gold), f"tokenizer.json keys {list(ours)}")
    for key in ("version", "truncation", "padding", "normalizer", "pre_tokenizer",
                "post_processor", "decoder"):
        check(ours.get(key) == gold[key], f"tokenizer.json {key} differs from the golden one")
    gm, om = gold["model"], ours["model"]
    check({k: v for k, v in om.items() if k not in ("vocab", "merges")}
          == {k: v for k, v in gm.items() if k not in ("vocab", "merges")}, "BPE options")
    vocab = om["vocab"]
    check(sorted(vocab.values()) == list(range(len(vocab))), "vocab ids not 0..n-1")
    # The 256 byte symbols come first, in the golden (GPT-2) order.
    check([t for t, _ in sorted(vocab.items(), key=lambda kv: kv[1])][:256]
          == [t for t, _ in sorted(gm["vocab"].items(), key=lambda kv: kv[1])][:256],
          "byte symbols differ from the golden vocabulary's first 256")
    check(len(om["merges"]) >= 200, f"only {len(om['merges'])} merges")
    check(all("".join(m) in vocab for m in om["merges"]), "a merge result is not in the vocab")
    for word in ("Ġthe", "Ġphoto", "Ġquality"):
        check(word in vocab, f"common word {word} is not one token")
    strip = [{k: v for k, v in t.items() if k != "id"} for t in ours["added_tokens"]]
    check(strip == [{k: v for k, v in t.items() if k != "id"} for t in gold["added_tokens"]],
          "added tokens differ from the golden ones (content or flags)")
    check([t["id"] for t in ours["added_tokens"]]
          == list(range(len(vocab), len(vocab) + len(strip))), "added token ids not after the vocab")
    with open(os.path.join(model, "tokenizer_config.json")) as f:
        tc = json.load(f)
    check("bos_token" in tc and tc["bos_token"] is None, "tokenizer_config bos_token not null")
    for name in ("vocab.json", "merges.txt", "special_tokens_map.json", "added_tokens.json"):
        check(os.path.isfile(os.path.join(model, name)), f"{name} missing")


def main():
    if not CLI or not GOLDEN or not os.path.isdir(GOLDEN):
        print("NS_CLI or golden data missing", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        # Neutral folder names: the kind must come from config.json.
        a, b, c, e = (os.path.join(tmp, n) for n in ("a", "b", "c", "m"))
        make(a, "--seed", "7")
        make(b, "--seed", "7")
        make(c, "--seed", "8")
        make(e, "--edit")
        check_model(a, "t2i")
        check_model(e, "edit")
        check_tokenizer_structure(a)
        files_a, files_b, files_c = all_files(a), all_files(b), all_files(c)
        check(files_a == files_b, "same seed, different files: "
              + str([k for k in files_a if files_a.get(k) != files_b.get(k)]))
        check(files_a["model-00003-of-00003.safetensors"] != files_c["model-00003-of-00003.safetensors"],
              "seeds 7 and 8 wrote the same weights")
        check(files_a["vae/checkpoint.pt"] != files_c["vae/checkpoint.pt"], "same VAE for two seeds")

        v = os.path.join(tmp, "vocab")
        make(v, "--vocab", os.path.join(GOLDEN, "tokenizer"))
        r = check_model(v, "t2i")
        with open(os.path.join(GOLDEN, "summary.json")) as f:
            gold_ids = json.load(f)["cases"]["t2i-tiny"]["special_token_ids"]
        for token, tid in gold_ids.items():
            check(r.get("special_tokens", {}).get(token) == tid, f"--vocab: id of {token}")
        vocab_size = r.get("vocab_size", 0)
        check(vocab_size % 64 == 0 and vocab_size > max(gold_ids.values()), f"vocab_size {vocab_size}")
        with open(os.path.join(GOLDEN, "tokenizer", "tokenizer.json"), "rb") as f:
            check(files_equal(os.path.join(v, "tokenizer.json"), f.read()), "tokenizer.json not copied")

        p = run("make-tiny")
        check(p.returncode == 2, "make-tiny without OUT should be a usage error")
        p = run("make-tiny", os.path.join(tmp, "x"), "--vocab", os.path.join(tmp, "nowhere"))
        check(p.returncode == 1 and "nowhere" in p.stderr, f"bad --vocab: {p.stderr}")
    return 1 if failures else 0


def files_equal(path, data):
    with open(path, "rb") as f:
        return f.read() == data


if __name__ == "__main__":
    sys.exit(main())
