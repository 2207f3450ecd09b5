/* Synthetic weights and test image of shared/spec/synthetic-weights.md: deterministic
 * values from each tensor's name and element index, reproducible by any implementation. */
#ifndef CX_SYNTH_H
#define CX_SYNTH_H

#include <stdint.h>

#include "config.h"
#include "cx_error.h"
#include "tensor_store.h"
#include "weights_table.h"

uint64_t cx_fnv1a64(const char *s);
/* u_i in (-1, 1) of the uniform stream for key h = fnv1a64(KEY). */
double cx_synth_uniform(uint64_t h, uint64_t i);
/* Fills `out` (numel floats) with the spec's values for one tensor. */
void cx_synth_tensor(const cx_weight_spec *w, float *out);
/* A full synthetic weight set (with __metadata__ like a converted file). */
int cx_synth_store(cx_backbone bb, int num_classes, cx_tensor_store **out, cx_err *e);
/* The synthetic RGB test image (W x H x 3, malloc'd). */
uint8_t *cx_synth_image(int width, int height, int seed, cx_err *e);

#endif
