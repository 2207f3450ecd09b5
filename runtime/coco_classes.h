/* COCO class names in matterport's order (spec §15; index 0 = "BG"). */
#ifndef CX_COCO_CLASSES_H
#define CX_COCO_CLASSES_H

#define CX_COCO_NUM_CLASSES 81
extern const char *const cx_coco_class_names[CX_COCO_NUM_CLASSES];
/* COCO category id of class i (0 for BG). */
extern const int cx_coco_category_ids[CX_COCO_NUM_CLASSES];
/* Serialises names as a JSON array string (malloc'd), as stored in __metadata__. */
char *cx_class_names_json(const char *const *names, int count);

#endif
