# test-remote.py — python-fu-eval script run by run-plugin-test.sh with a
# `nextstep serve` at @SERVER@ (both tiny models): the procedures with
# backend "remote" give the local picture and a recipe with the server's
# model name and seed but not its address; a missing key (a script's key
# comes from $NEXTSTEP_API_KEY, which GIMP here lacks) and a server killed mid-run fail with a message and leave the image untouched.
# Any failed check raises, which makes GIMP exit with code 64.
import json
import os
import signal
import subprocess
import threading

import gi
gi.require_version('Gimp', '3.0')
gi.require_version('Gegl', '0.4')
from gi.repository import Gegl, Gimp

SERVER = '@SERVER@'
T2I = os.environ['NS_TINY_T2I']
EDIT = os.environ['NS_TINY_EDIT']
CLI = os.environ['NS_CLI']
OK = Gimp.PDBStatusType.SUCCESS
FAILED = Gimp.PDBStatusType.EXECUTION_ERROR


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run(name, **props):
    proc = Gimp.get_pdb().lookup_procedure(name)
    cfg = proc.create_config()
    cfg.set_property('run-mode', Gimp.RunMode.NONINTERACTIVE)
    drawables = props.pop('drawables', None)
    if drawables is not None:
        cfg.set_core_object_array('drawables', drawables)
    for key, value in props.items():
        cfg.set_property(key, value)
    res = proc.run(cfg)
    status = res.index(0)
    if status != OK:
        return status, res.index(1)
    return status, (res.index(1), res.get_core_object_array(2))


def pixels(drawable):
    buf = drawable.get_buffer()
    return bytes(buf.get(buf.get_extent(), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))


def new_image():
    img = Gimp.Image.new(64, 64, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, 'source', 64, 64, Gimp.ImageType.RGBA_IMAGE, 100.0,
                           Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    layer.fill(Gimp.FillType.WHITE)
    return img, layer


def test_same_as_local():
    img, source = new_image()
    args = dict(image=img, drawables=[source], prompt='a red cube', width=32, height=32,
                seed=11, steps=2)
    status, local = run('plug-in-nextstep-generate', model=T2I, backend='cpu', **args)
    check(status == OK, f'local generate failed: {local}')
    status, remote = run('plug-in-nextstep-generate', backend='remote', server=SERVER, **args)
    check(status == OK, f'remote generate failed: {remote}')
    check(pixels(local[1][0]) == pixels(remote[1][0]), 'remote pixels differ from local')
    parasite = remote[1][0].get_parasite('nextstep-recipe')
    text = bytes(parasite.get_data()).decode('utf-8')
    data = json.loads(text)
    check(data['model'] == 'stepfun-ai/NextStep-1.1' and data['seed'] == 11
          and data['backend'] == 'remote', f'remote recipe: {data}')
    check(SERVER not in text, f'the recipe holds the server address: {text}')
    img.delete()
    print('remote generate equals local, recipe: ok')


def test_missing_key():
    serve = subprocess.Popen([CLI, 'serve', '--model', T2I, '--threads', '1',
                              '--api-key', 'right'], stdout=subprocess.PIPE, text=True)
    try:
        url = serve.stdout.readline().split()[-1]
        img, source = new_image()
        status, message = run('plug-in-nextstep-generate', image=img, drawables=[source],
                               prompt='x', width=32, height=32, steps=2, backend='remote',
                               server=url)
        check(status == FAILED and '401' in message and 'key' in message,
              f'missing key: {status} {message!r}')
        check(len(img.get_layers()) == 1, 'a refused key changed the image')
        img.delete()
    finally:
        serve.kill()
        serve.wait(timeout=30)
    print('missing key: ok')


def test_server_killed():
    serve = subprocess.Popen([CLI, 'serve', '--model', T2I, '--threads', '1'],
                             stdout=subprocess.PIPE, text=True)
    url = serve.stdout.readline().split()[-1]
    img, source = new_image()
    before = pixels(source)
    # The run takes far longer than this; the kill lands in its middle.
    timer = threading.Timer(1.5, lambda: serve.send_signal(signal.SIGKILL))
    timer.start()
    try:
        status, message = run('plug-in-nextstep-generate', image=img, drawables=[source],
                              prompt='x', width=512, height=512, steps=400,
                              backend='remote', server=url)
    finally:
        timer.cancel()
        serve.kill()
        serve.wait(timeout=30)
    check(status == FAILED and 'server' in message and 'unchanged' in message,
          f'server killed mid-run: {status} {message!r}')
    check(len(img.get_layers()) == 1 and pixels(source) == before,
          'the image changed after the server died')
    img.delete()
    print('server killed mid-run: ok')


def test_no_server_argument():
    status, message = run('plug-in-nextstep-generate', prompt='x', backend='remote')
    check(status != OK and 'server' in message, f'remote without a server: {message!r}')
    print('remote without a server: ok')


test_same_as_local()
test_missing_key()
test_server_killed()
test_no_server_argument()
print('NEXTSTEP-TEST-OK')
