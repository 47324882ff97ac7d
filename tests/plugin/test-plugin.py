# test-plugin.py — python-fu-eval script run by run-plugin-test.sh: drives
# plug-in-nextstep-generate and plug-in-nextstep-edit non-interactively on
# tiny models and checks what they put into the image, locally and with
# backend "remote" on the `nextstep serve` at @SERVER@: the same picture, a
# recipe with the server's model name and seed but not its address; a
# missing key (a script's key comes from $NEXTSTEP_API_KEY, which GIMP here
# lacks) and a server killed mid-run fail with a message and leave the image
# untouched. Any failed check raises, which makes GIMP exit with code 64.
import json
import os
import signal
import subprocess
import threading

import gi
gi.require_version('Gimp', '3.0')
gi.require_version('Gegl', '0.4')
from gi.repository import Gegl, Gimp

T2I = os.environ['NS_TINY_T2I']
EDIT = os.environ['NS_TINY_EDIT']
CLI = os.environ['NS_CLI']
SERVER = '@SERVER@'
OK = Gimp.PDBStatusType.SUCCESS
# A recipe's members are the procedure's argument names (ui/ns-recipe.h).
RECIPE_KEYS = {'generate': {'format', 'mode', 'version', 'prompt', 'negative-prompt', 'seed',
                            'steps', 'cfg', 'width', 'height', 'sampler', 'model', 'backend'},
               'edit': {'format', 'mode', 'version', 'instruction', 'negative-prompt', 'seed',
                        'steps', 'cfg', 'cfg-img', 'sampler', 'model', 'backend'}}
FAST = dict(steps=2, backend='cpu')


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def run(name, **props):
    """Runs name non-interactively; returns (status, message or values)."""
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
        print(f'{name}: {status.value_nick}: {res.index(1)}')
        return status, res.index(1)
    return status, (res.index(1), res.get_core_object_array(2))


def pixels(drawable):
    buf = drawable.get_buffer()
    return bytes(buf.get(buf.get_extent(), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))


def recipe(layer):
    parasite = layer.get_parasite('nextstep-recipe')
    check(parasite is not None, f'layer {layer.get_name()!r} has no nextstep-recipe parasite')
    data = json.loads(bytes(parasite.get_data()).decode('utf-8'))
    keys = RECIPE_KEYS[data.get('mode')]
    check(keys <= set(data), f'recipe lacks {keys - set(data)}: {data}')
    return data


def new_image(width, height, layer_size, offsets):
    img = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    layer = Gimp.Layer.new(img, 'source', *layer_size, Gimp.ImageType.RGBA_IMAGE,
                           100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    layer.set_offsets(*offsets)
    # A pattern, so that "unchanged" means something.
    w, h = layer_size
    buf = layer.get_buffer()
    data = bytes((x * 7 + y * 13 + c * 50) % 256
                 for y in range(h) for x in range(w) for c in range(4))
    buf.set(Gegl.Rectangle.new(0, 0, w, h), "R'G'B'A u8", data)
    buf.flush()
    return img, layer


def check_layer(layer, size, offsets, mode):
    got = (layer.get_width(), layer.get_height())
    check(got == size, f'{mode} layer size {got}, want {size}')
    got = layer.get_offsets()[1:]
    check(tuple(got) == offsets, f'{mode} layer offsets {got}, want {offsets}')
    check(any(pixels(layer)), f'{mode} layer is empty')
    data = recipe(layer)
    check(data['mode'] == mode, f'recipe mode {data["mode"]!r}, want {mode!r}')
    return data


def test_generate_into_image():
    img, source = new_image(96, 80, (96, 80), (0, 0))
    # 40×56 is off the 16-pixel grid: the layers must still be 40×56.
    status, values = run('plug-in-nextstep-generate', image=img, drawables=[source],
                         prompt='a red cube', width=40, height=56, seed=7, images=2,
                         model=T2I, **FAST)
    check(status == OK, f'generate failed: {values}')
    out, layers = values
    check(out == img, 'generate returned another image')
    check(len(layers) == 2, f'{len(layers)} layers returned, want 2')
    check(len(img.get_layers()) == 3, f'image has {len(img.get_layers())} layers, want 3')
    check(img.get_item_position(source) == 2, 'the new layers are not above the active one')
    for layer in layers:
        data = check_layer(layer, (40, 56), (0, 0), 'generate')
        check(data['seed'] == 7 and data['steps'] == 2 and data['prompt'] == 'a red cube',
              f'recipe does not match the request: {data}')
    img.delete()
    print('generate into an image: ok')


def test_generate_without_image():
    status, values = run('plug-in-nextstep-generate', prompt='a blue sphere', width=48,
                         height=32, model=T2I, **FAST)
    check(status == OK, f'generate with no image failed: {values}')
    img, layers = values
    check(img is not None and (img.get_width(), img.get_height()) == (48, 32),
          'no new 48×32 image was returned')
    check(len(layers) == 1 and len(img.get_layers()) == 1, 'want one layer')
    data = check_layer(layers[0], (48, 32), (0, 0), 'generate')
    check(data['seed'] >= 0, f'seed -1 should be recorded as the seed used: {data["seed"]}')
    img.delete()
    print('generate with no image: ok')


def test_edit_selection():
    img, source = new_image(128, 112, (80, 64), (20, 16))
    # The selection sticks out of the layer at the top left: the source is
    # their intersection, (20,16)-(60,50).
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 10, 10, 50, 40)
    before = pixels(source)
    status, values = run('plug-in-nextstep-edit', image=img, drawables=[source],
                         instruction='make it blue', seed=3, model=EDIT,
                         **{'limit-to-selection': True}, **FAST)
    check(status == OK, f'edit failed: {values}')
    _, layers = values
    check(len(layers) == 1, f'{len(layers)} layers returned, want 1')
    data = check_layer(layers[0], (40, 34), (20, 16), 'edit')
    check(data['seed'] == 3, f'recipe seed {data["seed"]}, want 3')
    check(layers[0].get_mask() is not None, 'limit-to-selection gave no layer mask')
    check(img.get_item_position(layers[0]) == img.get_item_position(source) - 1,
          'the edit result is not right above its source')
    check(pixels(source) == before, 'the source layer was modified')
    img.delete()
    print('edit with a selection at an offset: ok')


def test_bad_model():
    bad = '/nonexistent/nextstep-model'
    img, source = new_image(64, 64, (64, 64), (0, 0))
    before = pixels(source)
    for name, props in [('plug-in-nextstep-generate', dict(prompt='x', width=32, height=32)),
                        ('plug-in-nextstep-edit', dict(instruction='x'))]:
        status, message = run(name, image=img, drawables=[source], model=bad,
                              **props, **FAST)
        check(status == Gimp.PDBStatusType.EXECUTION_ERROR,
              f'{name} with a bad model folder: status {status}')
        check(bad in message and 'model folder' in message,
              f'{name}: the error should name the folder and say what to do: {message!r}')
        check(len(img.get_layers()) == 1, f'{name} changed the image after failing')
        check(pixels(source) == before, f'{name} changed the pixels after failing')
    img.delete()
    print('bad model folder: ok')


def test_remote_same_as_local():
    img, source = new_image(64, 64, (64, 64), (0, 0))
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


def test_remote_missing_key():
    serve = subprocess.Popen([CLI, 'serve', '--port', '0', '--model', T2I, '--threads', '1',
                              '--api-key', 'right'], stdout=subprocess.PIPE, text=True)
    try:
        url = serve.stdout.readline().split()[-1]
        img, source = new_image(64, 64, (64, 64), (0, 0))
        status, message = run('plug-in-nextstep-generate', image=img, drawables=[source],
                               prompt='x', width=32, height=32, steps=2, backend='remote',
                               server=url)
        check(status == Gimp.PDBStatusType.EXECUTION_ERROR and '401' in message and 'key' in message,
              f'missing key: {status} {message!r}')
        check(len(img.get_layers()) == 1, 'a refused key changed the image')
        img.delete()
    finally:
        serve.kill()
        serve.wait(timeout=30)
    print('missing key: ok')


def test_remote_server_killed():
    serve = subprocess.Popen([CLI, 'serve', '--port', '0', '--model', T2I, '--threads', '1'],
                             stdout=subprocess.PIPE, text=True)
    url = serve.stdout.readline().split()[-1]
    img, source = new_image(64, 64, (64, 64), (0, 0))
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
    check(status == Gimp.PDBStatusType.EXECUTION_ERROR and 'server' in message and 'unchanged' in message,
          f'server killed mid-run: {status} {message!r}')
    check(len(img.get_layers()) == 1 and pixels(source) == before,
          'the image changed after the server died')
    img.delete()
    print('server killed mid-run: ok')


def test_remote_no_server_argument():
    status, message = run('plug-in-nextstep-generate', prompt='x', backend='remote')
    check(status != OK and 'server' in message, f'remote without a server: {message!r}')
    print('remote without a server: ok')


test_generate_into_image()
test_generate_without_image()
test_edit_selection()
test_bad_model()
test_remote_same_as_local()
test_remote_missing_key()
test_remote_server_killed()
test_remote_no_server_argument()
print('NEXTSTEP-TEST-OK')
