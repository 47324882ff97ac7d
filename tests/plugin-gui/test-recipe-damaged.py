# test-recipe-damaged.py — python-fu-eval script run by run-gui-test.sh in
# the GUI gimp-3.0 under Xvfb. A layer whose `nextstep-recipe` parasite is
# damaged (two documents back to back, trailing bytes, not JSON, wrong
# types, huge values) is opened in the interactive generate dialog, as for
# "regenerate": the plug-in must say the recipe is unreadable (its warning
# window appears; Return closes it), then open its dialog as usual (Alt+C
# closes it), and leave the image as it was. A crash would end the call
# with an error and no window.
import os
import subprocess
import sys

import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.environ['NS_SOURCE_ROOT'], 'tests', 'plugin-gui'))
from plugin_test_util import check, new_image, pixels  # noqa: E402

GOOD = (b'{"format": 1, "mode": "generate", "prompt": "a fox", "seed": 5, "steps": 2, '
        b'"cfg": 7.5, "width": 32, "height": 32, "sampler": "hf-sde"}')
DAMAGED = {
    'doubled': GOOD + b'\n' + GOOD,
    'trailing bytes': GOOD + b'\x00garbage',
    'not JSON': b'{format: 1',
    'wrong types': GOOD.replace(b'"seed": 5', b'"seed": "5"'),
    'huge values': GOOD.replace(b'"steps": 2', b'"steps": 1e999'),
    'huge integer': GOOD.replace(b'"width": 32', b'"width": 99999999999999999999999'),
}
# Answers the plug-in's windows like a user; exits 1 when the warning never
# shows. The names reach the shell through the environment. xdotool's own
# --sync can die of an X error when a window goes away while it searches,
# so this polls.
CLICKER = '''
find() {
  for i in $(seq 300); do
    w=$(xdotool search --onlyvisible --name "$1" 2>/dev/null | head -n 1)
    [ -n "$w" ] && echo "$w" && return 0
    sleep 0.2
  done
  return 1
}
w=$(find "$NS_NOTE") || exit 1
xdotool windowfocus --sync "$w" key Return
d=$(find "$NS_DIALOG") || exit 2
xdotool windowfocus --sync "$d" key alt+c
'''


def open_dialog_on(name, data):
    img, layer = new_image(32, 32)
    layer.attach_parasite(Gimp.Parasite.new('nextstep-recipe', Gimp.PARASITE_PERSISTENT,
                                            list(data)))
    before = pixels(layer)
    env = dict(os.environ, NS_NOTE='recipe unreadable', NS_DIALOG='NextStep.*Generate')
    clicker = subprocess.Popen(['sh', '-c', CLICKER], env=env)
    proc = Gimp.get_pdb().lookup_procedure('plug-in-nextstep-generate')
    cfg = proc.create_config()
    cfg.set_property('run-mode', Gimp.RunMode.INTERACTIVE)
    cfg.set_property('image', img)
    cfg.set_core_object_array('drawables', [layer])
    status = proc.run(cfg).index(0)
    check(clicker.wait(timeout=120) == 0, f'{name}: no "recipe unreadable" warning shown')
    check(status == Gimp.PDBStatusType.CANCEL, f'{name}: the dialog ended with {status}')
    check(img.get_layers() == [layer] and pixels(layer) == before,
          f'{name}: the image changed')
    img.delete()
    print(f'damaged recipe ({name}): said unreadable: ok')


for case, text in DAMAGED.items():
    open_dialog_on(case, text)
print('NEXTSTEP-TEST-OK')
