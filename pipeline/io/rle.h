/* COCO run-length encoding of binary masks (the "compressed RLE" of the COCO format):
 * pixels in column-major (Fortran) order, alternating run lengths starting with a run
 * of zeros (possibly empty), serialised as a printable string: each run length (after
 * the third, minus the run two places before it) is written in 5-bit groups, least
 * significant first, as characters 48 + (group | 0x20 if more groups follow), the last
 * group's bit 0x10 giving the sign. Validated against an independent Python decoder
 * (tests/io/rle_check.py). */
#ifndef CX_RLE_H
#define CX_RLE_H

#include <stddef.h>
#include <stdint.h>

#include "cx_error.h"

/* Run lengths of a row-major mask[h][w] (nonzero = 1) in COCO column-major order.
 * *counts is malloc'd, *n its length (>= 1; the first run counts zeros). */
int cx_rle_from_mask(const uint8_t *mask, int h, int w, uint32_t **counts, size_t *n, cx_err *e);
/* The same runs for a mask known to be 0 outside box = {y1, x1, y2, x2} (y2/x2 exclusive,
 * clipped to the image here), as cx_detections' masks are outside their rois: reads only the
 * box, so a detection costs its box's pixels instead of the whole h*w plane. */
int cx_rle_from_mask_box(const uint8_t *mask, int h, int w, const int32_t box[4], uint32_t **counts, size_t *n,
                         cx_err *e);
/* Serialises run lengths as the COCO string (malloc'd, NUL-terminated). */
char *cx_rle_to_string(const uint32_t *counts, size_t n);
/* Row-major mask straight to the COCO string (NULL on allocation failure). */
char *cx_rle_encode_mask(const uint8_t *mask, int h, int w, cx_err *e);
/* cx_rle_from_mask_box straight to the COCO string (NULL on failure). */
char *cx_rle_encode_mask_box(const uint8_t *mask, int h, int w, const int32_t box[4], cx_err *e);
/* Parses a COCO string into run lengths; errors on malformed text or negative runs. */
int cx_rle_from_string(const char *s, uint32_t **counts, size_t *n, cx_err *e);
/* Expands run lengths into a row-major mask[h][w] of 0/1; the runs must sum to h*w. */
int cx_rle_to_mask(const uint32_t *counts, size_t n, int h, int w, uint8_t *mask, cx_err *e);

#endif
