# test-dialog.py — python-fu-eval script run by run-gui-test.sh in the GUI
# gimp-3.0 under Xvfb with a window manager: the interactive path as a user
# takes it. The dialog is opened through GIMP's own action (the menu entry,
# found with GIMP's action search) and driven with real key presses
# (xdotool); this script only watches the image through the PDB, from its
# one thread, while the plug-in runs in its own process.
#
# Generate: type a prompt, Ctrl+Enter, the canvas preview layer appears,
# Stop (no partial layer), Ctrl+Enter again, Insert (one new layer), Escape
# closes; then two Ctrl+Z in the image window remove the inserted layer and
# the step made before the dialog, so the preview and Stop left no undo step.
# Edit: the same on a selection, with a checkpoint folder named "tiny-t2i".
# The dialog opens with its defaults (512 × 512, the model's steps: a run
# long enough to be seen and stopped) and finds the tiny text-to-image model
# through $NEXTSTEP_MODEL, which run-gui-test.sh sets for it.
# Then the Generate dialog, closed at a place and size set with xdotool,
# reopens there (the geometry parasite of plugin/interactive.c).
# Screenshots of the dialog and of the canvas with the preview layer go to
# $NS_SCREENSHOT_DIR (and docs/ with NS_UPDATE_SCREENSHOT=1).
import os
import subprocess
import sys
import time

import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ['NS_SOURCE_ROOT'], 'tests', 'plugin-gui'))
from plugin_test_util import check, new_image  # noqa: E402

T2I = os.environ['NS_TINY_T2I']
PREVIEW = 'NextStep preview'
remembered = None   # the Generate dialog's geometry when it was closed


def xdotool(*args):
    args = [str(a) for a in args]
    out = subprocess.run(['xdotool', *args], capture_output=True, text=True, timeout=30)
    check(out.returncode == 0, f'xdotool {" ".join(args)} failed: {out.stderr.strip()}')
    return out.stdout.split()


def wait_for(what, predicate, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f'timed out after {seconds} s waiting for {what}')


def window(pattern, seconds=30):
    def find():
        out = subprocess.run(['xdotool', 'search', '--onlyvisible', '--name', pattern],
                             capture_output=True, text=True, timeout=30)
        return out.stdout.split()
    return wait_for(f'a window named {pattern!r}', find, seconds)[-1]


def keys(win, *names):
    xdotool('windowactivate', '--sync', win)
    xdotool('key', '--clearmodifiers', *names)


def type_text(win, text):
    xdotool('windowactivate', '--sync', win)
    xdotool('type', '--delay', '30', text)


def geometry(win):
    """(x, y, width, height) of a window, as xdotool reports it."""
    g = dict(line.split('=') for line in xdotool('getwindowgeometry', '--shell', win))
    return tuple(int(g[k]) for k in ('X', 'Y', 'WIDTH', 'HEIGHT'))


def layer_names(img):
    return [layer.get_name() for layer in img.get_layers()]


def screenshot(win, name, docs=True):
    """Saves the window (None: the whole screen) as PNG with GDK, in a
    process of its own."""
    if win is None:
        width, height = xdotool('getdisplaygeometry')
        geometry = dict(X=0, Y=0, WIDTH=width, HEIGHT=height)
    else:
        geometry = dict(line.split('=') for line in xdotool('getwindowgeometry', '--shell', win))
    targets = [os.environ.get('NS_SCREENSHOT_DIR')]
    if docs and os.environ.get('NS_UPDATE_SCREENSHOT') == '1':
        targets.append(os.path.join(os.environ['NS_SOURCE_ROOT'], 'docs'))
    code = ('import sys, gi; gi.require_version("Gdk", "3.0"); from gi.repository import Gdk;'
            'x, y, w, h = map(int, sys.argv[1:5]);'
            'shot = Gdk.pixbuf_get_from_window(Gdk.get_default_root_window(), x, y, w, h);'
            '[shot.savev(p, "png", [], []) for p in sys.argv[5:]]')
    paths = [os.path.join(t, name) for t in targets if t]
    subprocess.run(['python3', '-c', code, *(str(geometry[k]) for k in ('X', 'Y', 'WIDTH', 'HEIGHT')),
                    *paths], check=True, timeout=30)
    print(f'screenshot {name}: {paths}')


def close_welcome_dialog():
    """GIMP greets a new user folder with it, gimprc or not."""
    try:
        keys(window('Welcome to GIMP', 10), 'Escape')
    except AssertionError:
        pass


def open_dialog(image_window, label, title):
    """Runs the menu entry through GIMP's action search (/), as a user may."""
    keys(image_window, 'slash')
    search = window('Search Actions')
    type_text(search, label)
    time.sleep(1)
    keys(search, 'Return')
    return window(title, 60)


def generate_until_preview(img, dialog):
    """Ctrl+Enter, again while the model still loads (Generate is off until
    then), until the canvas preview layer shows the run."""
    for _ in range(20):
        keys(dialog, 'ctrl+Return')
        try:
            return wait_for('the canvas preview layer', lambda: PREVIEW in layer_names(img), 3)
        except AssertionError:
            continue
    raise AssertionError('Ctrl+Enter started no run with a canvas preview')


def finish_run(img):
    # A 512 × 512 tiny run takes 10–20 s alone, much more on a loaded machine.
    wait_for('the run to end (preview layer gone)', lambda: PREVIEW not in layer_names(img), 180)


def test_generate():
    img, source = new_image(256, 256)
    img.undo_group_start()
    marker = Gimp.Layer.new(img, 'marker', 8, 8, Gimp.ImageType.RGBA_IMAGE, 100.0,
                            Gimp.LayerMode.NORMAL)
    img.insert_layer(marker, None, 0)
    img.undo_group_end()
    Gimp.Display.new(img)
    Gimp.displays_flush()
    close_welcome_dialog()
    image_window = window(r'\[Untitled\]')
    dialog = open_dialog(image_window, 'Generate Image', 'NextStep.*Generate')

    type_text(dialog, 'a red cube')  # the focus starts in the prompt
    generate_until_preview(img, dialog)
    # The dialog opens over the image: move it aside for the canvas's picture.
    xdotool('windowmove', '--sync', dialog, 820, 0)
    screenshot(image_window, 'gimp-canvas-preview.png')
    xdotool('windowmove', '--sync', dialog, 0, 0)
    screenshot(dialog, 'gimp-dialog.png')
    keys(dialog, 'alt+s')
    finish_run(img)
    check(layer_names(img) == ['marker', 'source'],
          f'after Stop the layers are {layer_names(img)}: a partial result was left')
    print('Stop mid-run: the preview layer went, nothing was added: ok')

    generate_until_preview(img, dialog)
    finish_run(img)
    keys(dialog, 'alt+i')
    wait_for('the inserted layer', lambda: len(img.get_layers()) == 3, 30)
    names = layer_names(img)
    check(names[0].startswith('NextStep: a red cube') and names[1:] == ['marker', 'source'],
          f'after Insert the layers are {names}')
    # A place and size of the user's, which the next opening must take again.
    xdotool('windowsize', '--sync', dialog, 1000, 760)
    xdotool('windowmove', '--sync', dialog, 140, 90)
    time.sleep(0.5)
    global remembered
    remembered = geometry(dialog)
    keys(dialog, 'Escape')
    wait_for('the dialog to close', lambda: not subprocess.run(
        ['xdotool', 'search', '--onlyvisible', '--name', 'NextStep.*Generate'],
        capture_output=True).stdout.strip(), 30)
    print('Ctrl+Enter, Stop, Ctrl+Enter, Insert, Escape: ok')

    keys(image_window, 'ctrl+z')
    wait_for('Ctrl+Z to remove the inserted layer',
             lambda: layer_names(img) == ['marker', 'source'], 10)
    keys(image_window, 'ctrl+z')
    wait_for('a second Ctrl+Z to undo the step made before the dialog',
             lambda: layer_names(img) == ['source'], 10)
    print('one undo step per Insert; the preview and Stop left none: ok')
    return img, source, image_window


def test_edit(img, source, image_window):
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 32, 64, 128, 96)
    img.set_selected_layers([source])
    Gimp.displays_flush()
    dialog = open_dialog(image_window, 'Edit with Instruction', 'NextStep.*Edit')
    type_text(dialog, 'make it night')
    generate_until_preview(img, dialog)
    screenshot(dialog, 'gimp-dialog-edit.png')
    finish_run(img)
    keys(dialog, 'alt+i')
    wait_for('the inserted edit', lambda: len(img.get_layers()) == 2, 30)
    edited = img.get_layers()[0]
    check(edited.get_name().startswith('NextStep'), f'layers after Insert: {layer_names(img)}')
    _, x, y = edited.get_offsets()
    check((x, y, edited.get_width(), edited.get_height()) == (32, 64, 128, 96),
          f'the edit landed at {x},{y} {edited.get_width()}×{edited.get_height()}, '
          'want the selection 32,64 128×96')
    keys(dialog, 'Escape')
    print('edit of a selection with a checkpoint folder named "tiny-t2i": ok')


def test_geometry_remembered(image_window):
    """The Generate dialog reopens where and as large as it was closed
    (the edit dialog, opened in between, keeps its own)."""
    wait_for('the edit dialog to close', lambda: not subprocess.run(
        ['xdotool', 'search', '--onlyvisible', '--name', 'NextStep.*Edit'],
        capture_output=True).stdout.strip(), 30)
    dialog = open_dialog(image_window, 'Generate Image', 'NextStep.*Generate')
    time.sleep(1)
    got = geometry(dialog)
    keys(dialog, 'Escape')
    check(all(abs(a - b) <= 2 for a, b in zip(got, remembered)),
          f'the dialog reopened at {got}, want the remembered {remembered}')
    print(f'dialog reopened at its remembered place and size {got}: ok')


try:
    img, source, image_window = test_generate()
    test_edit(img, source, image_window)
    test_geometry_remembered(image_window)
except Exception:
    # What the screen showed when it went wrong, beside the other screenshots.
    screenshot(None, 'failure.png', False)
    raise
print('NEXTSTEP-TEST-OK')
