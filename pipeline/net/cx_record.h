/* Request records for run.json: what was sent where, with base64 payloads replaced by a
 * short placeholder and credentials removed from URLs. Headers are never recorded, so the
 * API key cannot reach a record. */
#ifndef CX_RECORD_H
#define CX_RECORD_H

#include <cjson/cJSON.h>

#include "cx_http.h"

/* Deep copy of a request body with every data URL and every long base64 string replaced by
 * "<base64 N chars>". NULL in, NULL out. */
cJSON *cx_record_strip_base64(const cJSON *body);

/* Appends {service, method, url, body, status, attempts, retried, elapsed_s, t_s, error}
 * to `log` (a JSON array; NULL = no recording). r and error may be NULL. t_start is the
 * monotonic time the request began (cx_now_s). */
void cx_record_request(cJSON *log, const char *service, const char *method, const char *url,
                       const cJSON *body, const cx_http_response *r, const char *error, double t_start);

double cx_now_s(void);
/* Seconds since the first cx_now_s() based record of this process (run-relative times). */
void cx_record_set_epoch(double t0);

#endif
