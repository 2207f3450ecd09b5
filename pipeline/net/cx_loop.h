/* The contextual diffusion loop (`ctxdiff run`): txt2img -> per iteration: segment, merge
 * masks per class, one LLM call for the scene context, inpaint object by object (each result
 * feeding the next). Outputs go to a fresh directory; run.json is rewritten atomically after
 * every completed step so that --resume continues from the last one. */
#ifndef CX_LOOP_H
#define CX_LOOP_H

#include <signal.h>
#include <stdint.h>

#include "config.h"
#include "cx_llm.h"
#include "cx_sd.h"

typedef struct cx_run_options {
  char prompt[4096];
  char negative[4096];
  int iterations;              /* 1, as the original */
  int64_t seed;                /* -1: the server picks; the used seed is read back */
  char weights[1024];          /* .safetensors, or "synthetic[:resnet50|resnet101[:NUM_CLASSES]]" */
  char device[16];             /* where segmentation runs: "cpu" (default) or "cuda" */
  char precision[16];          /* cuda GEMM precision: fp32 (default), fp16, bf16 */
  char out_dir[1024];
  int per_instance;            /* one object per detection instead of one per class */
  int resume;
  int quiet;
  char style_tags[1024];       /* appended to every object prompt (E.4) */
  int global_tags_in_object;   /* first N tags of the LLM's global prompt added to object prompts */
  cx_sd_settings sd;
  cx_llm_settings llm;
  cx_config seg;
} cx_run_options;

void cx_run_options_default(cx_run_options *o);
/* Applies a "run" config section (style_tags, global_tags_in_object, per_instance, iterations,
 * negative_prompt) and a "segmentation" section (matterport names). */
int cx_run_apply_sections(cx_run_options *o, const cJSON *doc, cx_err *e);
/* Loads the settings stored in DIR/run.json into o (for --resume). */
int cx_run_load_settings(const char *dir, cx_run_options *o, cx_err *e);

/* Runs the loop. `cancel` is incremented by the caller's SIGINT handler. Returns 0 when
 * done, 1 on failure (message in e), 130 when interrupted (state saved for --resume). */
int cx_run(const cx_run_options *o, volatile sig_atomic_t *cancel, cx_err *e);

#endif
