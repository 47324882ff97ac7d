#!/usr/bin/env python3
"""Progress and timings of `nextstep generate` and `convert` on the golden
tiny model, with stderr not a terminal (what a log sees): a line when each
stage starts and ends, the weight format --weights auto chose, --quiet for
no progress, --timings for one `timing: STAGE MS` line per stage; and on a
pseudo-terminal one line rewritten in place.

Environment: NS_CLI (the nextstep binary), NS_GOLDEN_DIR. Exit 77 = skip."""
import os
import pty
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


def generate(tmp, *extra):
    model = os.path.join(GOLDEN, "t2i-tiny", "model")
    vae = os.path.join(GOLDEN, "t2i-tiny", "vae")
    args = [CLI, "generate", "--model", model, "--vae", vae, "--prompt", "a cat", "--width",
            "32", "--height", "32", "--steps", "2", "--backend", "cpu", "-o",
            os.path.join(tmp, "out.png"), *extra]
    p = subprocess.run(args, capture_output=True, text=True, timeout=300)
    check(p.returncode == 0, f"generate {extra}: exit {p.returncode}: {p.stderr}")
    return p


def on_terminal(tmp):
    """stderr on a pseudo-terminal: carriage returns, no log lines."""
    model = os.path.join(GOLDEN, "t2i-tiny", "model")
    vae = os.path.join(GOLDEN, "t2i-tiny", "vae")
    leader, follower = pty.openpty()
    p = subprocess.Popen([CLI, "generate", "--model", model, "--vae", vae, "--prompt", "a cat",
                          "--width", "32", "--height", "32", "--steps", "2", "--backend", "cpu",
                          "-o", os.path.join(tmp, "tty.png")],
                         stdout=subprocess.DEVNULL, stderr=follower)
    os.close(follower)
    out = b""
    while True:
        try:
            chunk = os.read(leader, 4096)
        except OSError:
            break
        if not chunk:
            break
        out += chunk
    p.wait(timeout=300)
    os.close(leader)
    text = out.decode(errors="replace")
    check(p.returncode == 0, f"generate on a terminal: exit {p.returncode}")
    check("\rloading" in text and "\rtokens" in text and "\rVAE" in text,
          f"terminal progress shows every stage in place: {text[:300]!r}")
    check("nextstep: tokens" not in text, "no log lines on a terminal")


def main():
    if not CLI or not GOLDEN or not os.path.isdir(os.path.join(GOLDEN, "t2i-tiny")):
        print("NS_CLI or the golden data missing", file=sys.stderr)
        return 77
    with tempfile.TemporaryDirectory() as tmp:
        p = generate(tmp)
        for stage in ("loading", "prefill", "tokens", "VAE"):
            check(f"nextstep: {stage}" in p.stderr, f"a log line for {stage}: {p.stderr}")
        check("nextstep: tokens   [########################] 100%  4/4 tok" in p.stderr,
              f"the tokens stage ends with its count: {p.stderr}")
        check("Weights: bf16 (--weights auto: bf16 fits in the available RAM)" in p.stderr,
              f"auto says what it chose: {p.stderr}")
        check("nextstep: done in" in p.stderr, "the run's total time")

        q = generate(tmp, "--quiet", "--timings")
        check("nextstep: " not in q.stderr, f"--quiet shows no progress: {q.stderr}")
        names = [line.split()[1] for line in q.stdout.splitlines() if line.startswith("timing: ")]
        check(names == ["load", "encode", "prefill", "tokens", "per-token", "backbone-per-token",
                        "head-per-token", "vae", "total"], f"--timings lines: {q.stdout}")
        for line in q.stdout.splitlines():
            check(float(line.split()[2]) >= 0, f"a time in ms: {line}")

        env = dict(os.environ, XDG_CACHE_HOME=tmp)
        c = subprocess.run([CLI, "convert", "--weights", "int8", "--quant-min-elements", "1",
                            os.path.join(GOLDEN, "t2i-tiny", "model")],
                           capture_output=True, text=True, timeout=300, env=env)
        check(c.returncode == 0, f"convert: exit {c.returncode}: {c.stderr}")
        check("nextstep: convert" in c.stderr and "] 100%  " in c.stderr,
              f"convert shows its progress: {c.stderr}")
        on_terminal(tmp)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
