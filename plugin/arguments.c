/* arguments.c — the procedures' arguments, from NsSettings's table. */
#include "arguments.h"
#include "plugin-intl.h"

void
ns_plugin_add_arguments (GimpProcedure *procedure, NsMode mode)
{
  guint n;
  const NsSettingSpec *specs = ns_settings_specs (&n);
  guint flag = mode == NS_MODE_EDIT ? NS_SETTING_EDIT : NS_SETTING_GENERATE;

  for (guint i = 0; i < n; i++)
    {
      const NsSettingSpec *s = &specs[i];
      gboolean aux = (s->flags & NS_SETTING_AUX) != 0;
      const char *nick = _(s->nick), *blurb = _(s->blurb);

      if (! (s->flags & flag))
        continue;
      switch (s->type)
        {
        case NS_SETTING_STRING:
          (aux ? gimp_procedure_add_string_aux_argument
               : gimp_procedure_add_string_argument) (procedure, s->name, nick, blurb,
                                                      s->string, G_PARAM_READWRITE);
          break;
        case NS_SETTING_INT:
          (aux ? gimp_procedure_add_int_aux_argument
               : gimp_procedure_add_int_argument) (procedure, s->name, nick, blurb,
                                                   (int) s->min, (int) s->max,
                                                   (int) s->number, G_PARAM_READWRITE);
          break;
        case NS_SETTING_DOUBLE:
          (aux ? gimp_procedure_add_double_aux_argument
               : gimp_procedure_add_double_argument) (procedure, s->name, nick, blurb,
                                                      s->min, s->max, s->number,
                                                      G_PARAM_READWRITE);
          break;
        case NS_SETTING_BOOLEAN:
          (aux ? gimp_procedure_add_boolean_aux_argument
               : gimp_procedure_add_boolean_argument) (procedure, s->name, nick, blurb,
                                                       s->number != 0, G_PARAM_READWRITE);
          break;
        }
    }
}

void
ns_plugin_add_result_values (GimpProcedure *procedure)
{
  gimp_procedure_add_image_return_value (procedure, "image", _("Image"),
                                         _("The image the layers were added to"),
                                         TRUE, G_PARAM_READWRITE);
  gimp_procedure_add_core_object_array_return_value (procedure, "layers",
                                                     _("Layers"),
                                                     _("The new layers, one per "
                                                       "generated image"),
                                                     GIMP_TYPE_LAYER, G_PARAM_READWRITE);
}
