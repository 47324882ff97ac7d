# test-kill.py — python-fu-eval script run by tests/plugin/run-plugin-test.sh.
# GIMP's progress Cancel SIGKILLs a running plug-in (gimp3-plugin.md §6).
# This kills plug-in-nextstep-generate and -edit the same way while they
# sample and checks that the call fails instead of hanging, that the image is
# as it was (same layers, same pixels, no partial layer, no stray scratch
# image) and that the next call works.
import os
import subprocess
import sys

import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ['NS_SOURCE_ROOT'], 'tests', 'plugin-gui'))
from plugin_test_util import check, new_image, pixels, run  # noqa: E402

T2I = os.environ['NS_TINY_T2I']
EDIT = os.environ['NS_TINY_EDIT']
# Seconds between the plug-in's start and the kill: the tiny model loads in
# well under that, and the sampling below takes far longer.
KILL_AFTER = 3
# The pattern reaches the shell through the environment so that the shell's
# own command line does not match it.
KILLER = '''
for i in $(seq 300); do
  pgrep -f "$NS_KILL_PATTERN" >/dev/null && break
  sleep 0.1
done
sleep "$NS_KILL_AFTER"
pkill -9 -f "$NS_KILL_PATTERN" && echo "killer: plug-in killed"
'''


def start_killer():
    exe = os.path.join(os.environ['GIMP3_DIRECTORY'], 'plug-ins', 'nextstep', 'nextstep')
    env = dict(os.environ, NS_KILL_PATTERN=f'^{exe} .*-run', NS_KILL_AFTER=str(KILL_AFTER))
    return subprocess.Popen(['sh', '-c', KILLER], env=env)


def test_kill_mid_run(name, **props):
    img, source = new_image(256, 256)
    before = pixels(source)
    images_before = len(Gimp.get_images())
    killer = start_killer()
    status = run(name, img, source, seed=5, **props).index(0)
    check(killer.wait(timeout=30) == 0, f'{name}: the killer found no running plug-in')
    check(status != Gimp.PDBStatusType.SUCCESS,
          f'{name} succeeded: it ended before the kill (make it slower)')
    layers = img.get_layers()
    check(len(layers) == 1, f'{name}: {len(layers)} layers after the kill, want 1: '
          f'{[layer.get_name() for layer in layers]}')
    check(layers[0] == source, f'{name}: the source layer was replaced')
    check(pixels(source) == before, f'{name}: the source pixels changed')
    check(len(Gimp.get_images()) == images_before,
          f'{name}: {len(Gimp.get_images()) - images_before} stray image(s) left behind')
    img.delete()
    print(f'SIGKILL mid-run of {name} leaves the image as it was: ok')


def test_runs_after_kill():
    """GIMP starts a fresh plug-in process for the next call."""
    img, source = new_image(32, 32)
    status = run('plug-in-nextstep-generate', img, source, prompt='x', width=32,
                 height=32, steps=2, model=T2I).index(0)
    check(status == Gimp.PDBStatusType.SUCCESS, 'generate fails after a killed run')
    check(len(img.get_layers()) == 2, 'generate after a killed run added no layer')
    img.delete()
    print('generate after a killed run: ok')


# Many steps make sampling last far longer than KILL_AFTER.
test_kill_mid_run('plug-in-nextstep-generate', prompt='a red cube', width=256,
                  height=256, steps=200, images=2, model=T2I)
test_kill_mid_run('plug-in-nextstep-edit', instruction='make it blue', steps=200,
                  model=EDIT)
test_runs_after_kill()
print('NEXTSTEP-TEST-OK')
