/* Test driver for the SD and LLM clients (pipeline/net), run by test_pipeline.py against
 * the stub servers, plus unit checks of the pure parts:
 *   net_tool unit                         base64, error shapes, tag/scene validation
 *   net_tool sd  URL CONFIG PROMPT OUTDIR txt2img + one inpaint (left half masked)
 *   net_tool llm URL CONFIG PROMPT LABELS scene context for "Shoe,Sky,..."
 *   net_tool jpeg W H < rgb > jpeg        JPEG encoder for the SD stub's JPEG mode
 *   net_tool webp W H < rgb > webp        lossless WebP encoder for its WebP mode (CX_HAVE_WEBP)
 * Results go to stdout as JSON; errors to stderr, exit 1. */
#include <cjson/cJSON.h>
#include <stdio.h>
#include <jpeglib.h>
#include <stdlib.h>
#include <string.h>
#ifdef CX_HAVE_WEBP
#include <webp/encode.h>
#endif

#include "cx_base64.h"
#include "cx_http.h"
#include "cx_llm.h"
#include "cx_record.h"
#include "cx_sd.h"
#include "cx_settings.h"
#include "image_io.h"

static int failures;
#define CHECK(cond)                                                            \
  do {                                                                         \
    if (!(cond)) {                                                             \
      fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
      failures++;                                                              \
    }                                                                          \
  } while (0)
#define CHECK_STR(a, b)                                                                           \
  do {                                                                                            \
    const char *a_ = (a), *b_ = (b);                                                              \
    if (!a_ || strcmp(a_, b_)) {                                                                  \
      fprintf(stderr, "%s:%d: got \"%s\", want \"%s\"\n", __FILE__, __LINE__, a_ ? a_ : "(null)", b_); \
      failures++;                                                                                 \
    }                                                                                             \
  } while (0)

static void unit_base64(void) {
  /* RFC 4648 test vectors */
  const char *plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
  const char *enc[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
  for (int i = 0; i < 7; i++) {
    char *s = cx_b64_encode((const uint8_t *)plain[i], strlen(plain[i]), NULL);
    CHECK_STR(s, enc[i]);
    free(s);
    uint8_t *d;
    size_t n;
    cx_err e;
    CHECK(cx_b64_decode(enc[i], strlen(enc[i]), &d, &n, &e) == 0);
    CHECK(n == strlen(plain[i]) && !memcmp(d, plain[i], n));
    free(d);
  }
  uint8_t *d;
  size_t n;
  cx_err e;
  /* data URL prefix, embedded newlines every few chars (as Python's encodebytes), no padding */
  const char *tolerant = "data:image/png;base64,Zm9v\nYmE\r\n";
  CHECK(cx_b64_decode(tolerant, strlen(tolerant), &d, &n, &e) == 0 && n == 5 && !memcmp(d, "fooba", 5));
  free(d);
  CHECK(cx_b64_decode("Zm9v*mFy", 8, &d, &n, &e) == -1 && strstr(e.msg, "offset 4"));
}

static void unit_error_shapes(void) {
  char out[512];
  struct { const char *body, *want; } cases[] = {
      {"{\"detail\":\"Not Found\"}", "Not Found"},
      {"{\"detail\":[{\"loc\":[\"body\",\"steps\"],\"msg\":\"value is not a valid integer\",\"type\":\"type_error.integer\"}]}",
       "body.steps: value is not a valid integer"},
      {"{\"detail\":[{\"loc\":[\"body\",0],\"msg\":\"Expecting value\"}]}", "body.0: Expecting value"},
      {"{\"error\":\"RuntimeError\",\"detail\":\"\",\"body\":\"\",\"errors\":\"model 'x' not found\"}",
       "RuntimeError: model 'x' not found"},
      {"{\"error\":\"HTTPException\",\"detail\":\"Sampler not found\",\"body\":\"\",\"errors\":\"\"}", "Sampler not found"},
      {"{\"error\":{\"message\":\"Incorrect API key provided.\",\"type\":\"invalid_request_error\",\"code\":\"invalid_api_key\"}}",
       "Incorrect API key provided."},
      {"{\"error\":{\"code\":503,\"message\":\"Loading model\",\"type\":\"unavailable_error\"}}", "Loading model"},
      {"{\"object\":\"error\",\"message\":\"bad thing\",\"type\":\"BadRequestError\",\"code\":400}", "bad thing"},
      {"{\"error\":\"Unauthorized\"}", "Unauthorized"},
      {"{\"error\":\"OutOfMemoryError\",\"detail\":\"\",\"body\":\"\",\"message\":\"CUDA out of memory\"}",
       "OutOfMemoryError: CUDA out of memory"},
      {"Internal Server Error", "Internal Server Error"},
      {"<html>\n<body>502   Bad Gateway</body></html>", "<html> <body>502 Bad Gateway</body></html>"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cx_http_error_detail(cases[i].body, strlen(cases[i].body), out, sizeof out);
    CHECK_STR(out, cases[i].want);
  }
  const char *quota = "{\"error\":{\"message\":\"x\",\"type\":\"insufficient_quota\",\"code\":\"insufficient_quota\"}}";
  cx_http_error_code(quota, strlen(quota), out, sizeof out);
  CHECK_STR(out, "insufficient_quota");
  cx_url_redact("http://user:secret@127.0.0.1:7860/sdapi", out, sizeof out);
  CHECK_STR(out, "http://127.0.0.1:7860/sdapi");
  char s[64] = "key sk-abcdef123 and sk-abcdef123!";
  cx_redact_inplace(s, "sk-abcdef123");
  CHECK_STR(s, "key *** and ***!");
  CHECK(cx_infotext_seed("a prompt\nNegative prompt: x\nSteps: 20, Sampler: Euler, Seed: 4294967295, Size: 8x8") ==
        4294967295LL);
  CHECK(cx_infotext_seed("no params") == -1);
}

static char *join_tags(char **t, int n) {
  static char buf[2048];
  size_t o = 0;
  buf[0] = 0;
  for (int i = 0; i < n; i++) o += (size_t)snprintf(buf + o, sizeof buf - o, "%s%s", i ? "|" : "", t[i]);
  return buf;
}

static void unit_tags(void) {
  char **t;
  int n;
  cx_tags_normalise("'Polished,Shiny,Leather,Black,Heels'", 10, &t, &n);
  CHECK_STR(join_tags(t, n), "Polished|Shiny|Leather|Black|Heels");
  cx_tags_free(t, n);
  /* A1111 syntax is removed: weights, editing, lora calls, AND/BREAK keywords */
  cx_tags_normalise("(red dress:1.3), [blue:green:0.5], <lora:foo:0.8>, rain AND fog, BREAK, \"wet street.\"", 10, &t, &n);
  CHECK_STR(join_tags(t, n), "red dress1.3|bluegreen0.5|lorafoo0.8|rain fog|wet street");
  cx_tags_free(t, n);
  /* de-duplication (case-insensitive), bullets, numbering, long and empty tags, the 10-tag cap */
  cx_tags_normalise("- Sky, sky, 1. clouds, \xE2\x80\xA2 stars,,  , a tag that is much much longer than sixty characters in total length, "
                    "t1, t2, t3, t4, t5, t6, t7, t8, t9", 10, &t, &n);
  CHECK_STR(join_tags(t, n), "Sky|clouds|stars|t1|t2|t3|t4|t5|t6|t7");
  cx_tags_free(t, n);
}

static const cx_scene_object_in objs3[] = {
    {0, "Shoe", 0.01, {1, 2, 3, 4}}, {1, "Jacket", 0.1, {5, 6, 7, 8}}, {6, "Sky", 0.3, {0, 0, 10, 3}}};

static void unit_scene(void) {
  cx_scene_request req = {"1girl, full body, city background, walking", 64, 32, 3, objs3, NULL, 0};
  cx_scene sc;
  cx_err e;
  cJSON *notes = cJSON_CreateArray();
  /* fenced JSON; ids: 0 ok, 99 unknown but label "sky " matches; Jacket missing; duplicate of 0 ignored */
  const char *reply =
      "Sure! Here it is:\n```json\n{\"story\":\"A walk.\",\"global_prompt\":\"(dusk:1.2), neon\","
      "\"objects\":[{\"id\":0,\"label\":\"Shoe\",\"description\":\"d\",\"tags\":[\"black boots, glossy\",\"(wet:1.2)\"],"
      "\"negative_tags\":[\"sneakers\"]},{\"id\":99,\"label\":\"sky \",\"tags\":[\"violet sky\"],\"negative_tags\":[]},"
      "{\"id\":0,\"label\":\"Shoe\",\"tags\":[\"dup\"]},{\"id\":7,\"label\":\"Car\",\"tags\":[\"x\"]}],\"extra\":1}\n```\n";
  CHECK(cx_scene_validate(reply, &req, 10, &sc, notes, &e) == 0);
  if (!failures) {
    CHECK_STR(sc.story, "A walk.");
    CHECK_STR(sc.global_prompt, "dusk1.2, neon");
    CHECK(sc.global_negative == NULL);
    CHECK_STR(join_tags(sc.objects[0].tags, sc.objects[0].ntags), "black boots|glossy|wet1.2");
    CHECK(!sc.objects[0].fallback);
    CHECK(sc.objects[1].fallback); /* Jacket: label + global prompt tags */
    CHECK_STR(join_tags(sc.objects[1].tags, sc.objects[1].ntags), "dusk1.2|neon");
    CHECK_STR(join_tags(sc.objects[2].tags, sc.objects[2].ntags), "violet sky");
    CHECK(cJSON_GetArraySize(notes) == 1);
    char *p = cx_scene_object_prompt(&sc, 0, "masterpiece, best quality", 1);
    CHECK_STR(p, "Shoe, black boots, glossy, wet1.2, masterpiece, best quality, dusk1.2");
    free(p);
    p = cx_scene_object_negative(&sc, 0, "lowres, ((bad anatomy))");
    CHECK_STR(p, "sneakers, lowres, ((bad anatomy))");
    free(p);
    /* JSON round trip used by --resume */
    cJSON *j = cx_scene_to_json(&sc);
    cx_scene back;
    CHECK(cx_scene_from_json(j, &back, &e) == 0);
    CHECK(back.nobjects == 3 && back.objects[1].fallback && !strcmp(back.objects[2].tags[0], "violet sky"));
    cx_scene_free(&back);
    cJSON_Delete(j);
  }
  cx_scene_free(&sc);
  cJSON_Delete(notes);
  /* content failures */
  CHECK(cx_scene_validate("Story: a walk\nShoe: boots", &req, 10, &sc, NULL, &e) == -1);
  CHECK(cx_scene_validate("{\"story\":\"s\",\"global_prompt\":\"g\",\"objects\":[]}", &req, 10, &sc, NULL, &e) == -1);
  CHECK(cx_scene_validate("{\"story\":\"s\",\"objects\":[]}", &req, 10, &sc, NULL, &e) == -1);
  CHECK(cx_scene_validate("{\"story\":\"s\",\"global_prompt\":\"g\",\"objects\":[{\"id\":0,\"tags\":[\"((\",\"\"]}]}", &req,
                          10, &sc, NULL, &e) == -1);
  /* whole-step fallback: label + original prompt tags */
  CHECK(cx_scene_fallback(&req, 10, &sc, &e) == 0 && sc.degraded);
  char *p = cx_scene_object_prompt(&sc, 2, NULL, 3);
  CHECK_STR(p, "Sky, 1girl, full body, city background, walking");
  free(p);
  cx_scene_free(&sc);
}

static int cmd_unit(void) {
  unit_base64();
  unit_error_shapes();
  unit_tags();
  unit_scene();
  if (failures) fprintf(stderr, "%d check(s) failed\n", failures);
  else printf("all unit checks passed\n");
  return failures ? 1 : 0;
}

static int load_cfg(const char *path, cx_sd_settings *sd, cx_llm_settings *llm, cx_err *e) {
  cJSON *doc = NULL;
  if (!path[0]) return 0;
  int rc = cx_settings_load(path, sd, llm, &doc, e);
  cJSON_Delete(doc);
  return rc;
}

static int cmd_sd(const char *url, const char *cfg, const char *prompt, const char *outdir) {
  cx_sd_settings s;
  cx_llm_settings l;
  cx_err e;
  /* Everything the failure path frees, so the sanitizer run sees no leak there either. */
  cJSON *log = NULL;
  cx_sd_image a = {0}, b = {0};
  uint8_t *mask = NULL, *mpng = NULL;
  cx_sd_settings_default(&s);
  cx_llm_settings_default(&l);
  snprintf(s.url, sizeof s.url, "%s", url);
  if (load_cfg(cfg, &s, &l, &e)) goto fail;
  log = cJSON_CreateArray();
  cx_sd sd;
  if (cx_sd_init(&sd, &s, log, NULL, &e) || cx_sd_connect(&sd, &e)) goto fail;
  if (cx_sd_txt2img(&sd, prompt, "lowres", -1, &a, &e)) goto fail;
  int w = a.image.width, h = a.image.height;
  mask = calloc((size_t)w * h, 1);
  if (!mask) { cx_fail(&e, "out of memory"); goto fail; }
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w / 2; x++) mask[(size_t)y * w + x] = 255;
  size_t mlen;
  if (cx_png_encode(w, h, 1, mask, NULL, 0, &mpng, &mlen, &e)) goto fail;
  if (cx_sd_inpaint(&sd, a.png, a.png_len, mpng, mlen, w, h, "red shoe", "", a.seed + 1, &b, &e)) goto fail;
  char path[1024];
  snprintf(path, sizeof path, "%s/t2i.png", outdir);
  if (cx_write_file_atomic(path, a.png, a.png_len, &e)) goto fail;
  snprintf(path, sizeof path, "%s/i2i.png", outdir);
  if (cx_write_file_atomic(path, b.png, b.png_len, &e)) goto fail;
  cJSON *o = cJSON_CreateObject();
  cJSON_AddNumberToObject(o, "seed", (double)a.seed);
  cJSON_AddNumberToObject(o, "width", w);
  cJSON_AddNumberToObject(o, "height", h);
  cJSON_AddStringToObject(o, "format", a.format);
  cJSON_AddStringToObject(o, "infotext", a.infotext ? a.infotext : "");
  cJSON_AddNumberToObject(o, "inpaint_seed", (double)b.seed);
  cJSON_AddStringToObject(o, "sampler_sent", sd.sampler_sent);
  cJSON_AddStringToObject(o, "scheduler_sent", sd.scheduler_sent);
  cJSON_AddItemToObject(o, "log", log);
  char *txt = cJSON_Print(o);
  puts(txt);
  free(txt);
  cJSON_Delete(o);
  free(mask), free(mpng);
  cx_sd_image_free(&a), cx_sd_image_free(&b);
  return 0;
fail:
  fprintf(stderr, "error: %s\n", e.msg);
  cJSON_Delete(log);
  free(mask), free(mpng);
  cx_sd_image_free(&a), cx_sd_image_free(&b);
  return 1;
}

static int cmd_llm(const char *url, const char *cfg, const char *prompt, const char *labels) {
  cx_sd_settings s;
  cx_llm_settings ls;
  cx_err e;
  cx_sd_settings_default(&s);
  cx_llm_settings_default(&ls);
  snprintf(ls.url, sizeof ls.url, "%s", url);
  snprintf(ls.model, sizeof ls.model, "stub-model");
  if (load_cfg(cfg, &s, &ls, &e)) goto fail;
  cx_scene_object_in objs[16];
  int n = 0;
  char *copy = strdup(labels);
  for (char *sv = NULL, *t = strtok_r(copy, ",", &sv); t && n < 16; t = strtok_r(NULL, ",", &sv), n++) {
    memset(&objs[n], 0, sizeof objs[n]);
    objs[n].id = n;
    snprintf(objs[n].label, sizeof objs[n].label, "%s", t);
    objs[n].area_fraction = 0.1;
    objs[n].bbox[2] = objs[n].bbox[3] = 10;
  }
  free(copy);
  uint8_t png[] = {0x89, 'P', 'N', 'G', 13, 10, 26, 10};
  cx_scene_request req = {prompt, 64, 32, n, objs, png, sizeof png};
  cJSON *log = cJSON_CreateArray();
  cx_llm l;
  cx_llm_result r;
  if (cx_llm_init(&l, &ls, log, NULL, &e) || cx_llm_preflight(&l, &e) || cx_llm_scene(&l, &req, &r, &e)) {
    cJSON_Delete(log);
    goto fail;
  }
  cJSON *o = cJSON_CreateObject();
  cJSON_AddItemToObject(o, "scene", cx_scene_to_json(&r.scene));
  cJSON *prompts = cJSON_AddArrayToObject(o, "prompts");
  for (int i = 0; i < r.scene.nobjects; i++) {
    char *p = cx_scene_object_prompt(&r.scene, i, NULL, 0);
    cJSON_AddItemToArray(prompts, cJSON_CreateString(p));
    free(p);
  }
  cJSON_AddItemToObject(o, "fallbacks", r.fallbacks);
  cJSON_AddItemToObject(o, "exchanges", r.exchanges);
  r.fallbacks = r.exchanges = NULL;
  cJSON_AddStringToObject(o, "raw_reply", r.raw_reply ? r.raw_reply : "");
  cJSON_AddItemToObject(o, "log", log);
  char *txt = cJSON_Print(o);
  puts(txt);
  free(txt);
  cJSON_Delete(o);
  cx_llm_result_free(&r);
  return 0;
fail:
  fprintf(stderr, "error: %s\n", e.msg);
  return 1;
}

static int cmd_jpeg(int w, int h) {
  size_t n = (size_t)w * h * 3;
  uint8_t *rgb = malloc(n);
  if (!rgb || fread(rgb, 1, n, stdin) != n) return 1;
  struct jpeg_compress_struct c;
  struct jpeg_error_mgr jerr;
  c.err = jpeg_std_error(&jerr);
  jpeg_create_compress(&c);
  jpeg_stdio_dest(&c, stdout);
  c.image_width = (JDIMENSION)w, c.image_height = (JDIMENSION)h, c.input_components = 3, c.in_color_space = JCS_RGB;
  jpeg_set_defaults(&c);
  jpeg_set_quality(&c, 95, TRUE);
  jpeg_start_compress(&c, TRUE);
  while (c.next_scanline < c.image_height) {
    JSAMPROW row = rgb + (size_t)c.next_scanline * w * 3;
    jpeg_write_scanlines(&c, &row, 1);
  }
  jpeg_finish_compress(&c);
  jpeg_destroy_compress(&c);
  free(rgb);
  return 0;
}

#ifdef CX_HAVE_WEBP
/* Lossless, so that the test can ask for the stub's exact pixels back. */
static int cmd_webp(int w, int h) {
  size_t n = (size_t)w * h * 3;
  uint8_t *rgb = malloc(n), *webp = NULL;
  if (!rgb || fread(rgb, 1, n, stdin) != n) return 1;
  size_t len = WebPEncodeLosslessRGB(rgb, w, h, w * 3, &webp);
  int rc = len && fwrite(webp, 1, len, stdout) == len ? 0 : 1;
  WebPFree(webp);
  free(rgb);
  return rc;
}
#endif

int main(int argc, char **argv) {
  if (argc >= 2 && !strcmp(argv[1], "unit")) return cmd_unit();
  if (argc == 6 && !strcmp(argv[1], "sd")) return cmd_sd(argv[2], argv[3], argv[4], argv[5]);
  if (argc == 6 && !strcmp(argv[1], "llm")) return cmd_llm(argv[2], argv[3], argv[4], argv[5]);
  if (argc == 4 && !strcmp(argv[1], "jpeg")) return cmd_jpeg(atoi(argv[2]), atoi(argv[3]));
#ifdef CX_HAVE_WEBP
  if (argc == 4 && !strcmp(argv[1], "webp")) return cmd_webp(atoi(argv[2]), atoi(argv[3]));
#endif
  fprintf(stderr, "usage: net_tool unit | sd URL CONFIG PROMPT OUTDIR | llm URL CONFIG PROMPT LABELS | jpeg W H"
#ifdef CX_HAVE_WEBP
                  " | webp W H"
#endif
                  "\n");
  return 2;
}
