# check-pdb.py — python-fu-eval script run inside gimp-console-3.0 by
# run-in-gimp.sh. Checks the PDB signature of the NextStep procedures (the
# plug-in's scripting contract: names, order, types, defaults, ranges) and
# that calls which cannot work (no model installed: run-in-gimp.sh hides any
# the user has; bad arguments) fail with a status and a message, not a crash.
# Any failed check raises, which makes GIMP exit with code 64.
import os
import subprocess
import sys

import gi
gi.require_version('Gimp', '3.0')
from gi.repository import Gimp, GObject

G_MAXINT = 2**31 - 1
STRING, INT, DOUBLE, BOOLEAN = 'gchararray', 'gint', 'gdouble', 'gboolean'

# (name, value type, default, minimum, maximum) after run-mode, image, drawables.
ENGINE_ARGS = [
    ('sampler', STRING, '', None, None),
    ('model', STRING, '', None, None),
    ('vae', STRING, '', None, None),
    ('backend', STRING, 'auto', None, None),
]
GENERATE_ARGS = [
    ('prompt', STRING, '', None, None),
    ('negative-prompt', STRING, '', None, None),
    ('positive-prompt', STRING, '', None, None),
    ('width', INT, 512, 16, 4096),
    ('height', INT, 512, 16, 4096),
    ('steps', INT, 0, 0, 1000),
    ('cfg', DOUBLE, 0.0, 0.0, 30.0),
    ('seed', INT, -1, -1, G_MAXINT),
    ('images', INT, 1, 1, 16),
] + ENGINE_ARGS + [
    ('server', STRING, '', None, None),
]
EDIT_ARGS = [
    ('instruction', STRING, '', None, None),
    ('negative-prompt', STRING, '', None, None),
    ('steps', INT, 0, 0, 1000),
    ('cfg', DOUBLE, 0.0, 0.0, 30.0),
    ('cfg-img', DOUBLE, 0.0, 0.0, 30.0),
    ('seed', INT, -1, -1, G_MAXINT),
] + ENGINE_ARGS + [
    ('limit-to-selection', BOOLEAN, False, None, None),
    ('server', STRING, '', None, None),
]
IMAGE_PROC_ARGS = ['run-mode', 'image', 'drawables']
RETURN_VALUES = ['image', 'layers']
MENU_PATH = '<Image>/Filters/Generative/NextStep'
S = Gimp.ProcedureSensitivityMask


def check(condition, message):
    if not condition:
        raise AssertionError(message)


def check_signature(name, expected_args, menu_label, sensitivity):
    proc = Gimp.get_pdb().lookup_procedure(name)
    check(proc is not None, f'{name} is not in the PDB: the plug-in did not register')
    specs = proc.get_arguments()
    names = [s.name for s in specs]
    want = IMAGE_PROC_ARGS + [a[0] for a in expected_args]
    check(names == want, f'{name} arguments:\n  got  {names}\n  want {want}')
    for spec, (arg, vtype, default, lo, hi) in zip(specs[3:], expected_args):
        got_type = GObject.type_name(spec.value_type)
        check(got_type == vtype, f'{name} {arg}: type {got_type}, want {vtype}')
        check(spec.default_value == default,
              f'{name} {arg}: default {spec.default_value!r}, want {default!r}')
        if lo is not None:
            check((spec.minimum, spec.maximum) == (lo, hi),
                  f'{name} {arg}: range {spec.minimum}..{spec.maximum}, want {lo}..{hi}')
    returns = [s.name for s in proc.get_return_values()]
    check(returns == RETURN_VALUES, f'{name} return values: {returns}, want {RETURN_VALUES}')
    check(proc.get_menu_label() == menu_label,
          f'{name} menu label {proc.get_menu_label()!r}, want {menu_label!r}')
    check(MENU_PATH in proc.get_menu_paths(), f'{name} menu paths {proc.get_menu_paths()}')
    mask = int(proc.get_sensitivity_mask())
    check(mask & int(sensitivity) == int(sensitivity),
          f'{name} sensitivity mask {mask:#x} lacks {int(sensitivity):#x}')
    print(f'{name}: {len(names)} arguments, return values and menu as specified')
    return proc


def run(proc, **props):
    """Runs proc non-interactively; returns (status, error message)."""
    cfg = proc.create_config()
    cfg.set_property('run-mode', Gimp.RunMode.NONINTERACTIVE)
    drawables = props.pop('drawables', None)
    if drawables is not None:
        cfg.set_core_object_array('drawables', drawables)
    for key, value in props.items():
        cfg.set_property(key, value)
    res = proc.run(cfg)
    status = res.index(0)
    message = res.index(1) if status != Gimp.PDBStatusType.SUCCESS else ''
    print(f'{proc.get_name()} {props}: {status.value_nick}: {message}')
    return status, message


def check_fails(proc, want_status, want_words, **props):
    status, message = run(proc, **props)
    check(status == want_status, f'{proc.get_name()}: status {status}, want {want_status}')
    check(isinstance(message, str) and message.strip()
          and all(w in message for w in want_words),
          f'{proc.get_name()}: error message {message!r} should mention {want_words}')


def check_settings_properties(procs):
    """The procedures' arguments, as another process sees them through the
    PDB, are exactly NsSettings's non-auxiliary properties, which the plug-in
    copies to and from its config by name (ui/ns-settings.h);
    test-ui-settings --list prints each with "pdb" or "aux". Auxiliary
    arguments live only in the plug-in's own config (GIMP does not send them
    over the wire), so here they must be absent; tests/ui/test-settings.c
    checks that every property has its argument."""
    lister = os.environ.get('NS_SETTINGS_LIST')
    if not lister:
        print('NS_SETTINGS_LIST not set: config properties not compared')
        return
    listed = subprocess.run([lister, '--list'], capture_output=True, text=True,
                            check=True).stdout.split('\n')
    kinds = dict(line.split() for line in listed if line.strip())
    check(set(kinds.values()) == {'pdb', 'aux'}, f'unexpected --list output: {listed}')
    settings = {name for name, kind in kinds.items() if kind == 'pdb'}
    config = set()
    for proc in procs:
        names = {p.name for p in proc.create_config().list_properties()}
        config |= names - {'procedure', 'run-mode', 'image', 'drawables'}
    check(config == settings, f'PDB arguments and NsSettings differ:\n'
          f'  only in the PDB      {sorted(config - settings)}\n'
          f'  only in NsSettings {sorted(settings - config)}')
    print(f'PDB arguments = NsSettings non-auxiliary properties ({len(settings)}); '
          f'{len(kinds) - len(settings)} auxiliary')


generate = check_signature('plug-in-nextstep-generate', GENERATE_ARGS,
                           '_Generate Image…',
                           S.NO_IMAGE | S.NO_DRAWABLES | S.DRAWABLE)
edit = check_signature('plug-in-nextstep-edit', EDIT_ARGS,
                       '_Edit with Instruction…', S.DRAWABLE)

check_settings_properties([generate, edit])

E = Gimp.PDBStatusType
# With no image open and no model to find: an execution error with a message.
check_fails(generate, E.EXECUTION_ERROR, [], prompt='a red cube', seed=7)
check_fails(generate, E.CALLING_ERROR, ['sampler', 'magic', 'hf-sde'], sampler='magic')
check_fails(generate, E.CALLING_ERROR, ['backend', 'tpu', 'cuda'], backend='tpu')

img = Gimp.Image.new(64, 48, Gimp.ImageBaseType.RGB)
layer = Gimp.Layer.new(img, 'background', 64, 48, Gimp.ImageType.RGBA_IMAGE,
                       100.0, Gimp.LayerMode.NORMAL)
img.insert_layer(layer, None, 0)
check_fails(edit, E.EXECUTION_ERROR, [], image=img, drawables=[layer],
            instruction='make it blue', sampler='ode', backend='cpu')
# No drawables passed: the edit needs exactly one layer.
check_fails(edit, E.CALLING_ERROR, ['one layer', '0 drawables'], image=img)
check_fails(edit, E.CALLING_ERROR, ['sampler'], image=img, drawables=[layer], sampler='euler')
img.delete()

print('NEXTSTEP-TEST-OK')
