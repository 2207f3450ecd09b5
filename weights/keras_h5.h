/* Keras 2.x HDF5 weight files (matterport Mask R-CNN) -> safetensors.
 *
 * Layout facts (shared/spec/maskrcnn-matterport.md §14.1): root attribute `layer_names`
 * (possibly split as layer_names0, layer_names1, ...), one group per layer with a
 * `weight_names` attribute listing dataset paths inside the group (never constructed
 * here), `rpn_model` as a nested model whose weights are named by sub-layer, files from
 * `model.save` keeping the weights under `model_weights`. Tensors are named
 * "<layer>/<weight>" with the Keras shape and values unchanged. */
#ifndef CX_KERAS_H5_H
#define CX_KERAS_H5_H

#include "config.h"
#include "cx_error.h"
#include "tensor_store.h"

/* Reads every weight of a Keras .h5 file into a new store ("<layer>/<weight>" names, in
 * file order). keras_version receives the file's attribute ("" when absent). */
int cx_keras_h5_read(const char *path, cx_tensor_store **out, char *keras_version, size_t kv_len, cx_err *e);

/* Infers backbone and class count (spec §14.3) and checks that the store holds exactly
 * the expected tensors with the expected shapes; `what` names the source in messages. */
int cx_mrcnn_weights_check(const cx_tensor_store *s, const char *what, cx_backbone *bb, int *num_classes,
                           cx_err *e);

/* Reads a class list: one name per line, background first; blank trailing lines and
 * CR line ends are ignored. names[] and each name are malloc'd (cx_class_list_free). */
int cx_class_list_read(const char *path, char ***names, int *count, cx_err *e);
void cx_class_list_free(char **names, int count);

typedef struct cx_convert_result {
  cx_backbone backbone;
  int num_classes;
  int tensors;
  long long params;
  char keras_version[64];
} cx_convert_result;

/* The whole conversion: read, check, name the classes (built-in COCO names for 81
 * classes without a list), write OUT atomically. Nothing is written on failure. */
int cx_convert_keras_h5(const char *in_path, const char *out_path, const char *classes_path,
                        cx_convert_result *res, cx_err *e);

#endif
