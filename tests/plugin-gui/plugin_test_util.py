# plugin_test_util.py — helpers shared by the python-fu-eval scripts of this
# folder, which find it through $NS_SOURCE_ROOT.
import gi
gi.require_version('Gimp', '3.0')
gi.require_version('Gegl', '0.4')
from gi.repository import Gegl, Gimp


def check(condition, message):
    """Raises on a failed check: GIMP then exits with code 64."""
    if not condition:
        raise AssertionError(message)


def pixels(drawable):
    buf = drawable.get_buffer()
    return bytes(buf.get(buf.get_extent(), 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE))


def new_image(width, height):
    """An RGB image with one layer, 'source', holding a pattern (so that
    "unchanged" means something). Making it is not on the undo stack, so
    that a Ctrl+Z can only undo what came after."""
    img = Gimp.Image.new(width, height, Gimp.ImageBaseType.RGB)
    img.undo_disable()
    layer = Gimp.Layer.new(img, 'source', width, height, Gimp.ImageType.RGBA_IMAGE,
                           100.0, Gimp.LayerMode.NORMAL)
    img.insert_layer(layer, None, 0)
    data = bytes((x * 7 + y * 13 + c * 50) % 256
                 for y in range(height) for x in range(width) for c in range(4))
    layer.get_buffer().set(Gegl.Rectangle.new(0, 0, width, height), "R'G'B'A u8", data)
    img.undo_enable()
    return img, layer


def run(name, image, drawable, **props):
    """Runs name non-interactively on drawable with the CPU backend, prints
    its status and message, and returns all it returned."""
    proc = Gimp.get_pdb().lookup_procedure(name)
    cfg = proc.create_config()
    cfg.set_property('run-mode', Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property('image', image)
    cfg.set_core_object_array('drawables', [drawable])
    for key, value in dict(props, backend='cpu').items():
        cfg.set_property(key, value)
    res = proc.run(cfg)
    print(f'{name}: {res.index(0).value_nick}: {res.index(1)}')
    return res
