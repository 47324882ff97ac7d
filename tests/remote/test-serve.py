#!/usr/bin/env python3
"""`nextstep serve` and the remote backend, with real processes on 127.0.0.1.

A real server with tiny models (`nextstep make-tiny`); the CLI as the client
(`--backend remote`) and raw HTTP for what the CLI never sends. Every wait
is bounded. Environment: NS_CLI. Run one case: test-serve.py NAME."""
import base64
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

CLI = os.environ.get("NS_CLI", "")
TMP = tempfile.mkdtemp(prefix="ns-serve-")
T2I = os.path.join(TMP, "t2i")
EDIT = os.path.join(TMP, "edit")
T2I_ID = "stepfun-ai/NextStep-1.1"
EDIT_ID = "stepfun-ai/NextStep-1-Large-Edit"
failures = []


def check(cond, what):
    if not cond:
        failures.append(what)
        print("FAIL:", what, file=sys.stderr)


def cli(*args, timeout=300):
    return subprocess.run([CLI, *args], capture_output=True, text=True, timeout=timeout)


class Server:
    """A `nextstep serve` process; its port is read from its first line."""

    def __init__(self, *extra):
        self.proc = subprocess.Popen(
            [CLI, "serve", "--port", "0", "--model", T2I, "--edit-model", EDIT, "--threads", "1",
             *extra],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        ready, _, _ = select.select([self.proc.stdout], [], [], 120)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("Listening on http://"):
            self.stop()
            raise RuntimeError(f"serve did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line.split()[-1]
        self.port = int(self.url.rsplit(":", 1)[1])

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)

    def request(self, method, path, body=None, headers=None, timeout=120):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, r.read()
        finally:
            conn.close()

    def post_json(self, obj, path="/v1/images/generations", **kw):
        body = obj if isinstance(obj, (bytes, str)) else json.dumps(obj)
        return self.request("POST", path, body, {"Content-Type": "application/json"}, **kw)


def small(**fields):
    return {"prompt": "a cat", "size": "64x64", "num_inference_steps": 2, **fields}


def multipart(fields, image=None):
    """A multipart/form-data body: text fields, then the image part."""
    b = "nsboundary42"
    out = b""
    for k, v in fields.items():
        out += (f"--{b}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").encode()
    if image is not None:
        out += (f"--{b}\r\nContent-Disposition: form-data; name=\"image\"; "
                f"filename=\"in.png\"\r\nContent-Type: image/png\r\n\r\n").encode()
        out += image + b"\r\n"
    out += f"--{b}--\r\n".encode()
    return out, {"Content-Type": f"multipart/form-data; boundary={b}"}


# ---- the cases ----------------------------------------------------------------

def test_same_png(s):
    """The same seed gives the same PNG remotely as locally, with previews."""
    common = ["--prompt", "a red house", "--width", "64", "--height", "64", "--seed", "7"]
    local = os.path.join(TMP, "local.png")
    remote = os.path.join(TMP, "remote.png")
    previews = os.path.join(TMP, "previews")
    p = cli("generate", "--model", T2I, "--threads", "1", *common, "-o", local)
    check(p.returncode == 0, f"local generate: {p.stderr}")
    p = cli("generate", "--backend", "remote", "--server", s.url, *common, "-o", remote,
            "--preview-dir", previews)
    check(p.returncode == 0, f"remote generate: {p.stderr}")
    check(os.path.exists(remote) and open(local, "rb").read() == open(remote, "rb").read(),
          "remote PNG differs from the local one")
    check(os.path.isdir(previews) and len(os.listdir(previews)) > 0, "no remote previews")
    status, body = s.post_json(small(n=2, seed=5))
    reply = json.loads(body)
    check(status == 200 and len(reply["data"]) == 2 and "created" in reply,
          f"n=2 reply: {status} {body[:200]}")
    check(reply.get("nextstep", {}).get("seed") == 5, "the reply names the seed")


def test_edit(s):
    """/v1/images/edits gives what a local edit gives."""
    src = os.path.join(TMP, "src.png")
    p = cli("generate", "--model", T2I, "--threads", "1", "--prompt", "a tree", "--width", "64",
            "--height", "48", "-o", src)
    check(p.returncode == 0, f"input picture: {p.stderr}")
    common = ["--image", src, "--prompt", "make it snowy", "--seed", "3", "--steps", "3"]
    local = os.path.join(TMP, "edit-local.png")
    remote = os.path.join(TMP, "edit-remote.png")
    p = cli("edit", "--model", EDIT, "--threads", "1", *common, "-o", local)
    check(p.returncode == 0, f"local edit: {p.stderr}")
    p = cli("edit", "--backend", "remote", "--server", s.url, *common, "-o", remote)
    check(p.returncode == 0, f"remote edit: {p.stderr}")
    check(os.path.exists(remote) and open(local, "rb").read() == open(remote, "rb").read(),
          "remote edit differs from the local one")
    body, headers = multipart({"prompt": "snow", "num_inference_steps": "2", "seed": "1"},
                              open(src, "rb").read())
    status, reply = s.request("POST", "/v1/images/edits", body, headers)
    check(status == 200 and len(json.loads(reply)["data"]) == 1, f"raw edit: {status} {reply[:200]}")


def test_concurrent(s):
    """4 clients at once: each is served or refused with 429, none lost."""
    results = []

    def client():
        try:
            results.append(s.post_json(small(size="256x256", num_inference_steps=20))[0])
        except OSError as e:
            results.append(repr(e))
    threads = [threading.Thread(target=client) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    check(len(results) == 4 and all(r in (200, 429) for r in results),
          f"concurrent statuses: {results}")
    check(results.count(200) >= 1, f"no concurrent request served: {results}")
    check(results.count(429) >= 1, f"4 at once with --queue 1 refused none: {results}")


def test_disconnect(s):
    """A client that goes away cancels its run: the next request starts at once."""
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=60)
    body = json.dumps(small(size="512x512", num_inference_steps=400, stream=True)).encode()
    sock.sendall(b"POST /v1/images/generations HTTP/1.1\r\nHost: x\r\nContent-Type: "
                 b"application/json\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    seen = b""
    deadline = time.monotonic() + 120
    while b"event: progress" not in seen and time.monotonic() < deadline:
        chunk = sock.recv(65536)
        if not chunk:
            break
        seen += chunk
    check(b"event: progress" in seen, "no progress event before disconnecting")
    sock.close()
    t0 = time.monotonic()
    status, body = s.post_json(small(), timeout=120)
    took = time.monotonic() - t0
    check(status == 200, f"request after a disconnect: {status} {body[:200]}")
    check(took < 15, f"the request after a disconnect waited {took:.1f} s")


def hostile_cases():
    """(what, method, path, body, headers, expected status)."""
    png_text, form_headers = multipart({"prompt": "x"}, b"GIF89a not a png at all")
    no_image, _ = multipart({"prompt": "x"})
    big_png, _ = multipart({"prompt": "x"}, b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\1\0\0\0\1\0\0"
                                             b"\x08\x06\0\0\0")
    j = {"Content-Type": "application/json"}
    gen = "/v1/images/generations"
    return [
        ("malformed JSON", "POST", gen, b'{"prompt": "a"', j, 400),
        ("trailing content", "POST", gen, b'{"prompt": "a"} {}', j, 400),
        ("not an object", "POST", gen, b'["a"]', j, 400),
        ("deep nesting", "POST", gen, b'{"extra_params": ' + b'[' * 5000 + b']' * 5000 + b'}', j, 400),
        ("NUL byte", "POST", gen, b'{"prompt": "a\0"}', j, 400),
        ("empty body", "POST", gen, b'', j, 400),
        ("no prompt", "POST", gen, json.dumps({"n": 1}), j, 400),
        ("prompt a number", "POST", gen, json.dumps({"prompt": 5}), j, 400),
        ("n a string", "POST", gen, json.dumps(small(n="2")), j, 400),
        ("seed a float", "POST", gen, json.dumps(small(seed=1.5)), j, 400),
        ("seed negative", "POST", gen, json.dumps(small(seed=-1)), j, 400),
        ("steps a bool", "POST", gen, json.dumps(small(num_inference_steps=True)), j, 400),
        ("guidance below 1", "POST", gen, json.dumps(small(guidance_scale=0.5)), j, 400),
        ("extra_params a list", "POST", gen, json.dumps(small(extra_params=[1])), j, 400),
        ("unknown extra", "POST", gen, json.dumps(small(extra_params={"eta": 1})), j, 400),
        ("bad cfg_schedule", "POST", gen, json.dumps(small(extra_params={"cfg_schedule": "x"})), j, 400),
        ("unknown field", "POST", gen, json.dumps(small(background="transparent")), j, 400),
        ("size 0", "POST", gen, json.dumps(small(size="0x0")), j, 400),
        ("size odd", "POST", gen, json.dumps(small(size="65x64")), j, 400),
        ("size huge", "POST", gen, json.dumps(small(size="100000x100000")), j, 400),
        ("size text", "POST", gen, json.dumps(small(size="large")), j, 400),
        ("n = 100", "POST", gen, json.dumps(small(n=100)), j, 400),
        ("n = 0", "POST", gen, json.dumps(small(n=0)), j, 400),
        ("url format", "POST", gen, json.dumps(small(response_format="url")), j, 400),
        ("50 MB body", "POST", gen, b"{" + b" " * (50 << 20) + b"}", j, 413),
        ("non-PNG image", "POST", "/v1/images/edits", png_text, form_headers, 400),
        ("no image", "POST", "/v1/images/edits", no_image, form_headers, 400),
        ("65536² PNG header", "POST", "/v1/images/edits", big_png, form_headers, 400),
        ("edit not a form", "POST", "/v1/images/edits", b"{}", j, 400),
        ("form field of the wrong type", "POST", "/v1/images/edits",
         multipart({"prompt": "x", "n": "two"}, b"")[0], form_headers, 400),
        ("unknown path", "GET", "/v1/images", None, {}, 404),
    ]


def test_hostile(s):
    """Bad requests get a 4xx with a message; the server stays up."""
    for what, method, path, body, headers, want in hostile_cases():
        try:
            status, reply = s.request(method, path, body, headers)
        except OSError as e:
            check(False, f"{what}: {e!r}")
            continue
        check(status == want, f"{what}: HTTP {status}, expected {want}: {reply[:200]}")
        try:
            message = json.loads(reply)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = ""
        check(len(message) > 10, f"{what}: no error message: {reply[:200]}")
    check(s.request("GET", "/health")[0] == 200, "server down after the hostile table")


def test_openai_fields(s):
    """Fields that OpenAI-style clients send and we do not use are ignored."""
    status, body = s.post_json(small(model="whatever", user="u1", quality="hd", style="vivid"))
    check(status == 200, f"OpenAI extras refused: {status} {body[:200]}")
    status, body = s.request("GET", "/v1/models")
    ids = [m["id"] for m in json.loads(body)["data"]]
    # make-tiny writes the published _name_or_path into config.json
    check(status == 200 and ids == [T2I_ID, EDIT_ID], f"/v1/models: {status} {ids}")
    p = cli("inspect", "--server", s.url, "--json")
    check(p.returncode == 0 and json.loads(p.stdout)["models"][EDIT_ID]["edit"] is True,
          f"inspect --server: {p.returncode} {p.stdout} {p.stderr}")


def test_api_key():
    """With a key: a wrong or missing key is 401; the right one works."""
    s = Server("--api-key", "s3cret")
    try:
        check(s.request("GET", "/v1/models")[0] == 401, "no key accepted")
        check(s.request("GET", "/v1/models", headers={"Authorization": "Bearer nope"})[0] == 401,
              "wrong key accepted")
        check(s.request("GET", "/v1/models", headers={"Authorization": "Bearer s3cret"})[0] == 200,
              "right key refused")
        check(s.request("GET", "/health")[0] == 200, "health needs no key")
        out = os.path.join(TMP, "key.png")
        p = cli("generate", "--backend", "remote", "--server", s.url, "--prompt", "a",
                "--width", "32", "--height", "32", "-o", out)
        check(p.returncode != 0 and "401" in p.stderr and "key" in p.stderr,
              f"CLI without the key: {p.returncode} {p.stderr}")
        p = cli("generate", "--backend", "remote", "--server", s.url, "--api-key", "s3cret",
                "--prompt", "a", "--width", "32", "--height", "32", "-o", out)
        check(p.returncode == 0, f"CLI with the key: {p.stderr}")
    finally:
        s.stop()
    p = cli("serve", "--port", "0", "--model", T2I, "--host", "0.0.0.0", timeout=60)
    check(p.returncode != 0 and "--api-key" in p.stderr, f"open host without a key: {p.stderr}")


def test_plain_server():
    """A server without our extension (as vLLM-Omni): plain requests, same PNG,
    no previews, and edits refused with a message."""
    s = Server("--plain")
    try:
        common = ["--prompt", "a red house", "--width", "64", "--height", "64", "--seed", "7"]
        plain = os.path.join(TMP, "plain.png")
        previews = os.path.join(TMP, "plain-previews")
        p = cli("generate", "--backend", "remote", "--server", s.url, *common, "-o", plain,
                "--preview-dir", previews)
        check(p.returncode == 0, f"generate on a plain server: {p.stderr}")
        local = os.path.join(TMP, "plain-local.png")
        cli("generate", "--model", T2I, "--threads", "1", *common, "-o", local)
        check(os.path.exists(plain) and open(plain, "rb").read() == open(local, "rb").read(),
              "the plain server's PNG differs from the local one")
        check(not os.listdir(previews) if os.path.isdir(previews) else True,
              "previews from a plain server")
        p = cli("edit", "--backend", "remote", "--server", s.url, "--image", local,
                "--prompt", "x", "-o", os.path.join(TMP, "plain-edit.png"))
        check(p.returncode != 0 and "does not edit" in p.stderr,
              f"edit on a plain server: {p.returncode} {p.stderr}")
        p = cli("inspect", "--server", s.url, "--json")
        check(p.returncode == 0 and json.loads(p.stdout)["models"][T2I_ID]["previews"] is False,
              f"inspect a plain server: {p.stdout} {p.stderr}")
    finally:
        s.stop()


def signal_mid_run(sig, name):
    """Starts a long remote run on a fresh server, sends `sig` to the server
    once previews arrive; returns (server, its exit status, CLI status,
    CLI stderr, output path)."""
    s = Server()
    out = os.path.join(TMP, name + ".png")
    previews = os.path.join(TMP, name + "-previews")
    cmd = subprocess.Popen([CLI, "generate", "--backend", "remote", "--server", s.url,
                            "--prompt", "a", "--steps", "400", "--preview-dir", previews,
                            "-o", out], stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (os.path.isdir(previews) and os.listdir(previews)) and time.monotonic() < deadline:
        time.sleep(0.05)
    s.proc.send_signal(sig)
    try:
        rc = s.proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        rc = "still running"
    s.stop()
    try:
        _, err = cmd.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        cmd.kill()
        err = "(did not end)"
    return s, rc, cmd.returncode, err, out


def test_sigterm():
    """SIGTERM mid-run: the run is cancelled, the client told, the server gone at once."""
    s, rc, cli_rc, err, out = signal_mid_run(signal.SIGTERM, "term")
    check(rc == 0, f"serve after SIGTERM: {rc} {s.proc.stderr.read()}")
    check(cli_rc != 0 and not os.path.exists(out), f"CLI after SIGTERM: {err}")


def test_server_killed():
    """Killed mid-run: the CLI says so and writes nothing."""
    s, _, cli_rc, err, out = signal_mid_run(signal.SIGKILL, "killed")
    check(cli_rc != 0 and "server" in err, f"CLI after the kill: {cli_rc} {err}")
    check(not os.path.exists(out), "an output was written after the server died")
    p = cli("generate", "--backend", "remote", "--server", s.url, "--prompt", "a", "-o", out,
            timeout=60)
    check(p.returncode != 0 and "Cannot connect" in p.stderr,
          f"CLI with no server: {p.returncode} {p.stderr}")


SHARED = [test_same_png, test_edit, test_openai_fields, test_hostile, test_disconnect,
          test_concurrent]
ALONE = [test_api_key, test_plain_server, test_sigterm, test_server_killed]


def main():
    if not CLI:
        print("NS_CLI is not set", file=sys.stderr)
        return 77
    for out, extra in ((T2I, []), (EDIT, ["--edit"])):
        p = cli("make-tiny", *extra, out)
        if p.returncode != 0:
            print(f"make-tiny failed: {p.stderr}", file=sys.stderr)
            return 1
    only = sys.argv[1:]
    s = Server("--queue", "1")
    try:
        for case in SHARED:
            if not only or case.__name__ in only:
                print("--", case.__name__)
                case(s)
        check(s.proc.poll() is None, "the server died")
    finally:
        s.stop()
    for case in ALONE:
        if not only or case.__name__ in only:
            print("--", case.__name__)
            case()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
