/* ctxdiff: contextual diffusion with a native Mask R-CNN runtime. Dispatches subcommands. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "commands.h"
#include "cpu_kernels.h"

int cx_cli_threads(const char *cmd, const char *value) {
  char *end = NULL;
  const long n = value ? strtol(value, &end, 10) : 0;
  if (!value || !*value || *end || n < 1 || n > 4096) {
    fprintf(stderr, "ctxdiff %s: --threads must be an integer from 1 to 4096, got '%s'\n", cmd, value ? value : "");
    return 2;
  }
  cx_set_threads((int)n);
  return 0;
}

typedef struct {
  const char *name;
  int (*fn)(int, char **);
  const char *summary;
} command;

static const command commands[] = {
#ifdef CTXDIFF_HAVE_NET
    {"run", cx_cmd_run, "generate -> segment -> LLM context -> inpaint, iterated"},
#endif
    {"segment", cx_cmd_segment, "detect objects in image files (JSON + overlay per image)"},
#ifdef CTXDIFF_HAVE_HDF5
    {"convert", cx_cmd_convert, "convert matterport Keras .h5 weights to safetensors"},
#endif
    {"bench", cx_cmd_bench, "measure segmentation throughput and per-stage time"},
#ifdef CTXDIFF_HAVE_CUDA
    {"validate", cx_cmd_validate, "check the CUDA kernels op by op against the CPU backend"},
#endif
    {"synth-weights", cx_cmd_synth_weights, "write the deterministic synthetic test weights"},
    {"synth-image", cx_cmd_synth_image, "write the deterministic synthetic test image (PNG)"},
};

static void usage(FILE *f) {
  fprintf(f,
          "ctxdiff %s - contextual diffusion with a native Mask R-CNN runtime\n\n"
          "usage: ctxdiff COMMAND [options]   (ctxdiff COMMAND --help for details)\n\ncommands:\n",
          CTXDIFF_VERSION);
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].summary);
#ifndef CTXDIFF_HAVE_NET
  fprintf(f, "\n(this build has no libcurl/cJSON: 'run' is not available)\n");
#endif
}

int main(int argc, char **argv) {
  if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
    usage(argc < 2 ? stderr : stdout);
    return argc < 2 ? 2 : 0;
  }
  if (!strcmp(argv[1], "--version") || !strcmp(argv[1], "version")) {
    printf("ctxdiff %s\n", CTXDIFF_VERSION);
    return 0;
  }
  for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
    if (!strcmp(argv[1], commands[i].name)) return commands[i].fn(argc - 1, argv + 1);
  fprintf(stderr, "ctxdiff: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
