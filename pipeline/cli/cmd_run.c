/* ctxdiff run: the contextual diffusion loop (pipeline/net/cx_loop.h) from the command line. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "commands.h"
#include "cx_loop.h"
#include "cx_settings.h"
#include "mrcnn.h"

static volatile sig_atomic_t run_cancel;

static void on_sigint(int sig) {
  (void)sig;
  run_cancel++;
  if (run_cancel >= 3) _exit(130); /* a third Ctrl-C: the user really wants out */
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: ctxdiff run --prompt TEXT [options]\n"
          "       ctxdiff run --resume DIR [--sd-url URL] [--llm-url URL] [--quiet]\n\n"
          "Generates an image with a Stable Diffusion web UI (AUTOMATIC1111 API), segments it with\n"
          "Mask R-CNN, asks an OpenAI-compatible LLM for a scene story and one inpainting prompt per\n"
          "object, and inpaints the objects one after another, for N iterations.\n\n"
          "  --prompt TEXT            prompt for txt2img (the original's: \"1girl, full body, city background, walking\")\n"
          "  --negative-prompt TEXT   negative prompt (txt2img and every inpainting step)\n"
          "  --iterations N           segment/LLM/inpaint rounds (default 1)\n"
          "  --seed N                 txt2img seed; inpainting step k uses seed+1+k (default: the server picks)\n"
          "  --sd-url URL             web UI started with --api (default http://127.0.0.1:7860)\n"
          "  --sd-auth USER:PASS      credentials of the web UI's --api-auth (or $CTXDIFF_SD_AUTH)\n"
          "  --llm-url URL            OpenAI-compatible base URL incl. /v1 (default https://api.openai.com/v1)\n"
          "  --llm-model NAME         model (default gpt-4o); the key comes from $OPENAI_API_KEY\n"
          "  --weights FILE           Mask R-CNN weights (.safetensors from ctxdiff convert; default\n"
          "                           $CTXDIFF_WEIGHTS or ./coco.safetensors; \"synthetic[:resnet50[:N]]\" for tests)\n"
          "  --device D               where segmentation runs: cpu (default), cuda (GPU 0) or cuda:N (CUDA build + GPU)\n"
          "  --precision P            segmentation GEMMs on cuda: fp32 (default, same detections as the CPU), fp16, bf16\n"
          "  --set NAME=VALUE         segmentation setting by matterport name (repeatable)\n"
          "  --per-instance           one inpainting step per detection instead of per class\n"
          "  --config FILE.json       {\"sd\":{...}, \"llm\":{...}, \"segmentation\":{...}, \"run\":{...}}\n"
          "  --out DIR                output directory, new or empty (default ./ctxdiff-run-DATE-TIME)\n"
          "  --resume DIR             continue an interrupted run from its last completed step\n"
          "  --threads N              CPU threads for segmentation (default: OMP_NUM_THREADS, else every core)\n"
          "  --quiet                  no progress on stderr\n\n"
          "Ctrl-C interrupts the running generation (/sdapi/v1/interrupt) and saves the state for --resume.\n");
}

int cx_cmd_run(int argc, char **argv) {
  cx_run_options o;
  cx_run_options_default(&o);
  cx_err e = {{0}};
  const char *prompt = NULL, *negative = NULL, *sd_url = NULL, *sd_auth = getenv("CTXDIFF_SD_AUTH");
  const char *llm_url = NULL, *llm_model = NULL, *weights = NULL, *out = NULL, *config = NULL, *resume = NULL;
  const char *device = NULL, *precision = NULL;
  const char *sets[64];
  int nsets = 0, iterations = 0, per_instance = 0, quiet = 0, have_seed = 0;
  long long seed = -1;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
#define OPT(name, dst)                                                     \
  if (!strcmp(a, name)) {                                                  \
    if (!v) {                                                              \
      fprintf(stderr, "ctxdiff run: %s needs a value\n", name);            \
      return 2;                                                            \
    }                                                                      \
    dst = v;                                                               \
    i++;                                                                   \
    continue;                                                              \
  }
    OPT("--prompt", prompt) OPT("--negative-prompt", negative) OPT("--sd-url", sd_url) OPT("--sd-auth", sd_auth)
    OPT("--llm-url", llm_url) OPT("--llm-model", llm_model) OPT("--weights", weights) OPT("--out", out)
    OPT("--config", config) OPT("--resume", resume) OPT("--device", device) OPT("--precision", precision)
#undef OPT
    if (!strcmp(a, "--iterations") && v) {
      iterations = atoi(v), i++;
      if (iterations < 1) {
        fprintf(stderr, "ctxdiff run: --iterations must be at least 1\n");
        return 2;
      }
    } else if (!strcmp(a, "--seed") && v) {
      char *end;
      seed = strtoll(v, &end, 10), i++, have_seed = 1;
      if (*end || seed < -1 || seed > 4294967295LL) {
        fprintf(stderr, "ctxdiff run: --seed must be an integer in [0, 4294967295] (or -1)\n");
        return 2;
      }
    } else if (!strcmp(a, "--set") && v) {
      if (nsets == 64) {
        fprintf(stderr, "ctxdiff run: too many --set options\n");
        return 2;
      }
      sets[nsets++] = v, i++;
    } else if (!strcmp(a, "--threads") && v) {
      if (cx_cli_threads("run", v)) return 2;
      i++;
    } else if (!strcmp(a, "--per-instance")) {
      per_instance = 1;
    } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
      quiet = 1;
    } else if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "ctxdiff run: unknown or incomplete option '%s'\n\n", a);
      usage(stderr);
      return 2;
    }
  }

  if (resume) {
    if (prompt || config || nsets || iterations || have_seed || per_instance || negative) {
      fprintf(stderr, "ctxdiff run: --resume continues with the stored settings; only --sd-url, --sd-auth, "
                      "--llm-url, --llm-model, --weights, --device, --precision, --threads and --quiet may be given with it\n");
      return 2;
    }
    if (cx_run_load_settings(resume, &o, &e)) {
      fprintf(stderr, "ctxdiff run: %s\n", e.msg);
      return 1;
    }
    snprintf(o.out_dir, sizeof o.out_dir, "%s", resume);
    o.resume = 1;
  } else {
    if (config) {
      cJSON *doc = NULL;
      if (cx_settings_load(config, &o.sd, &o.llm, &doc, &e) || cx_run_apply_sections(&o, doc, &e)) {
        cJSON_Delete(doc);
        fprintf(stderr, "ctxdiff run: %s\n", e.msg);
        return 1;
      }
      cJSON_Delete(doc);
    }
    for (int i = 0; i < nsets; i++)
      if (cx_config_set_kv(&o.seg, sets[i], &e)) {
        fprintf(stderr, "ctxdiff run: --set %s: %s\n", sets[i], e.msg);
        return 2;
      }
    if (cx_config_validate(&o.seg, &e)) {
      fprintf(stderr, "ctxdiff run: segmentation settings: %s\n", e.msg);
      return 2;
    }
    if (!prompt) {
      fprintf(stderr, "ctxdiff run: --prompt is required (e.g. --prompt \"1girl, full body, city background, "
                      "walking\")\n\n");
      usage(stderr);
      return 2;
    }
    snprintf(o.prompt, sizeof o.prompt, "%s", prompt);
    if (negative) snprintf(o.negative, sizeof o.negative, "%s", negative);
    if (iterations) o.iterations = iterations;
    if (have_seed) o.seed = seed;
    if (per_instance) o.per_instance = 1;
    if (out) {
      snprintf(o.out_dir, sizeof o.out_dir, "%s", out);
    } else {
      time_t t = time(NULL);
      struct tm tm;
      localtime_r(&t, &tm);
      strftime(o.out_dir, sizeof o.out_dir, "ctxdiff-run-%Y%m%d-%H%M%S", &tm);
    }
    if (!weights) weights = getenv("CTXDIFF_WEIGHTS");
    if (!weights && access("coco.safetensors", R_OK) == 0) weights = "coco.safetensors";
    if (!weights) {
      /* A first run usually lacks more than the weights: list everything still missing. */
      fprintf(stderr, "ctxdiff run: no segmentation weights: pass --weights FILE.safetensors (get them with "
                      "scripts/get-coco-weights, or convert with  ctxdiff convert mask_rcnn_coco.h5 coco.safetensors) "
                      "or set $CTXDIFF_WEIGHTS\n");
      const char *url = llm_url ? llm_url : o.llm.url;
      if (strstr(url, "api.openai.com") && !getenv("OPENAI_API_KEY"))
        fprintf(stderr, "ctxdiff run: also needed: OPENAI_API_KEY for %s (or --llm-url of a local OpenAI-compatible "
                        "server, e.g. http://127.0.0.1:11434/v1 for Ollama)\n", url);
      fprintf(stderr, "ctxdiff run: and a Stable Diffusion web UI must be running with --api at %s (see README)\n",
              sd_url ? sd_url : o.sd.url);
      return 2;
    }
  }
  if (weights) snprintf(o.weights, sizeof o.weights, "%s", weights);
  /* where segmentation runs (also given with --resume: an execution choice); checked now, not
   * after the first generation */
  if (device) snprintf(o.device, sizeof o.device, "%s", device);
  if (precision) snprintf(o.precision, sizeof o.precision, "%s", precision);
  int dev_index;
  const int dev_kind = cx_device_parse(o.device, &dev_index, &e);
  if (dev_kind < 0) {
    fprintf(stderr, "ctxdiff run: --device: %s\n", e.msg);
    return 2;
  }
  if (o.precision[0] && strcmp(o.precision, "fp32") && strcmp(o.precision, "fp16") && strcmp(o.precision, "bf16")) {
    fprintf(stderr, "ctxdiff run: --precision must be fp32, fp16 or bf16, got '%s'\n", o.precision);
    return 2;
  }
  if (dev_kind == 0 && o.precision[0] && strcmp(o.precision, "fp32")) {
    fprintf(stderr, "ctxdiff run: --precision %s needs --device cuda (the CPU path computes in fp32)\n", o.precision);
    return 2;
  }
  if (cx_device_check(o.device, &e)) {
    fprintf(stderr, "ctxdiff run: --device %s: %s\n", o.device, e.msg);
    return 1;
  }
  if (sd_url) snprintf(o.sd.url, sizeof o.sd.url, "%s", sd_url);
  if (sd_auth) snprintf(o.sd.auth, sizeof o.sd.auth, "%s", sd_auth);
  if (llm_url) snprintf(o.llm.url, sizeof o.llm.url, "%s", llm_url);
  if (llm_model) snprintf(o.llm.model, sizeof o.llm.model, "%s", llm_model);
  o.quiet = quiet;

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_sigint;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGTERM, &sa, NULL);
  int rc = cx_run(&o, &run_cancel, &e);
  memset(o.sd.auth, 0, sizeof o.sd.auth);
  if (rc) fprintf(stderr, "ctxdiff run: %s\n", e.msg);
  return rc;
}
