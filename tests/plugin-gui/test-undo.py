# test-undo.py — python-fu-eval script run by run-gui-test.sh in the GUI
# gimp-3.0 under Xvfb. It opens an image in a display, runs
# plug-in-nextstep-generate on it non-interactively, sends a real Ctrl+Z to
# the image window with xdotool and checks that this one undo step removed
# exactly the generated layers and left the source layer as it was.
import os
import subprocess
import sys
import time

import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ['NS_SOURCE_ROOT'], 'tests', 'plugin-gui'))
from plugin_test_util import check, new_image, pixels, run  # noqa: E402

T2I = os.environ['NS_TINY_T2I']


def xdotool(*args):
    out = subprocess.run(['xdotool', *args], capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, f'xdotool {" ".join(args)} failed: {out.stderr.strip()}')
    return out.stdout.split()


def press_ctrl_z():
    """Focuses the image window (there is no window manager to do it) and
    types Ctrl+Z into it through the XTEST extension, like a user."""
    windows = xdotool('search', '--sync', '--onlyvisible', '--name', r'\[Untitled\]')
    check(len(windows) == 1, f'want one image window, found {windows}')
    xdotool('windowfocus', '--sync', windows[0])
    xdotool('key', '--clearmodifiers', 'ctrl+z')


def wait_for_layers(img, count, seconds):
    """GIMP handles the key press while this script runs; polls for it."""
    deadline = time.monotonic() + seconds
    while len(img.get_layers()) != count and time.monotonic() < deadline:
        time.sleep(0.2)
    return img.get_layers()


def test_ctrl_z_undoes_generate():
    img, source = new_image(64, 48)
    before = pixels(source)
    Gimp.Display.new(img)
    Gimp.displays_flush()
    res = run('plug-in-nextstep-generate', img, source, prompt='a red cube', width=32,
              height=32, steps=2, images=2, seed=5, model=T2I)
    check(res.index(0) == Gimp.PDBStatusType.SUCCESS, f'generate failed: {res.index(1)}')
    check(len(res.get_core_object_array(2)) == 2, 'generate did not return 2 layers')
    check(len(img.get_layers()) == 3, f'{len(img.get_layers())} layers after generate, want 3')
    Gimp.displays_flush()
    press_ctrl_z()
    layers = wait_for_layers(img, 1, 10)
    names = [layer.get_name() for layer in layers]
    check(len(layers) != 3, 'Ctrl+Z did not change the image')
    check(layers == [source], f'after one Ctrl+Z the layers are {names}, want only "source"')
    check(pixels(source) == before, 'the source pixels changed')
    print('one Ctrl+Z in the image window undoes a whole generate: ok')


test_ctrl_z_undoes_generate()
print('NEXTSTEP-TEST-OK')
