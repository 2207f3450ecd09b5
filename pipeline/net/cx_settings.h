/* The run's config file (--config FILE.json):
 *   {"sd": {cx_sd_settings fields}, "llm": {cx_llm_settings fields},
 *    "segmentation": {"DETECTION_MIN_CONFIDENCE": 0.9, ...matterport names...},
 *    "run": {"style_tags": "...", "global_tags_in_object": 3, "per_instance": false, ...}}
 * Unknown sections and keys are errors that name them. */
#ifndef CX_SETTINGS_H
#define CX_SETTINGS_H

#include <cjson/cJSON.h>

#include "cx_error.h"
#include "cx_llm.h"
#include "cx_sd.h"

/* Reads and parses a JSON file (malloc'd tree). */
cJSON *cx_json_load_file(const char *path, cx_err *e);
/* Applies the "sd" and "llm" sections; returns the whole document in *doc (caller frees)
 * so that other sections can be read. */
int cx_settings_load(const char *path, cx_sd_settings *sd, cx_llm_settings *llm, cJSON **doc, cx_err *e);
/* Matterport config value as text for cx_config_set: numbers, strings, arrays as "(a, b)". */
int cx_json_to_setting_text(const cJSON *v, char *out, size_t n);

#endif
