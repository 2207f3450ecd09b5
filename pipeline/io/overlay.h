/* Detection overlay for humans (matterport's display_instances, shared/spec §17, made
 * deterministic): each instance's mask tinted with a distinct colour (0.5 alpha), its
 * outline, a dashed box and a "<class> <score>" caption in a built-in 5x7 bitmap font. */
#ifndef CX_OVERLAY_H
#define CX_OVERLAY_H

#include <stdint.h>

#include "cx_error.h"
#include "mrcnn.h"

/* Colour of instance i of n: hue i/n, saturation 1, value 1 (as 0..255 RGB). */
void cx_overlay_colour(int i, int n, uint8_t rgb[3]);
/* Draws onto rgb (h*w*3, modified in place). labels[i] is the caption of detection i
 * (NULL: none). Detections must have the image's size. */
int cx_overlay_draw(uint8_t *rgb, int w, int h, const cx_detections *d, const char *const *labels, cx_err *e);
/* Draws text with the built-in font (lower case shown as upper case); scale >= 1.
 * Returns the width in pixels. */
int cx_overlay_text(uint8_t *rgb, int w, int h, int x, int y, const char *text, int scale, const uint8_t colour[3]);
int cx_overlay_text_width(const char *text, int scale);

#endif
