"""Pipeline tests: the SD and LLM clients (through net_tool) and `ctxdiff run`, against the
stub servers of stubs.py on 127.0.0.1. One case per invocation:
    test_pipeline.py CASE --tool net_tool --ctxdiff ctxdiff --work DIR"""
import argparse
import base64
import json
import os
import shutil
import socket
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stubs  # noqa: E402

ARGS = None
CASES = {}
SECRET = "sk-test-SECRET-0123456789abcdef"


def case(fn):
    CASES[fn.__name__] = fn
    return fn


class Fail(Exception):
    pass


def check(cond, what):
    if not cond:
        raise Fail(what)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def workdir(name):
    d = os.path.join(ARGS.work, name)
    shutil.rmtree(d, ignore_errors=True)
    os.makedirs(d)
    return d


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f)
    return path


def run(cmd, env_extra=None, timeout=90, expect=0):
    env = {k: v for k, v in os.environ.items() if k not in ("OPENAI_API_KEY", "CTXDIFF_SD_AUTH")}
    env.update(env_extra or {})
    t0 = time.time()
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    p.elapsed = time.time() - t0
    if expect is not None and p.returncode != expect:
        raise Fail(f"{' '.join(cmd[:2])} exited {p.returncode}, expected {expect}\nstdout: {p.stdout[-3000:]}\n"
                   f"stderr: {p.stderr[-3000:]}")
    return p


# ------------------------------------------------------------------------------ SD client

SD_CFG = {"sd": {"width": 64, "height": 48, "hr_scale": 2, "progress_interval_s": 0.05, "backoff_base_s": 0.05}}


def sd_tool(sd_url, cfg, out, expect=0, env=None):
    return run([ARGS.tool, "sd", sd_url, cfg, "1girl, walking", out], env_extra=env, expect=expect)


def posts(stub, path):
    return [b for m, p, h, b in stub.requests if m == "POST" and p == path]


@case
def sd_happy():
    d = workdir("sd_happy")
    sd = stubs.SDStub()
    cfg = write_json(os.path.join(d, "cfg.json"), SD_CFG)
    p = sd_tool(sd.url, cfg, d)
    out = json.loads(p.stdout)
    seq = sd.paths()
    check(seq == [("GET", "/sdapi/v1/sd-models"), ("GET", "/sdapi/v1/options"), ("GET", "/sdapi/v1/schedulers"),
                  ("GET", "/sdapi/v1/samplers"), ("POST", "/sdapi/v1/txt2img"), ("POST", "/sdapi/v1/img2img")],
          f"request sequence {seq}")
    t = posts(sd, "/sdapi/v1/txt2img")[0]
    want = {"prompt": "1girl, walking", "negative_prompt": "lowres", "styles": [], "seed": -1,
            "sampler_name": "DPM++ 2M", "scheduler": "Karras", "cfg_scale": 7, "batch_size": 1, "n_iter": 1,
            "send_images": True, "save_images": False, "steps": 20, "width": 64, "height": 48, "enable_hr": True,
            "hr_scale": 2, "hr_upscaler": "Latent", "hr_second_pass_steps": 20, "denoising_strength": 0.6}
    check(t == want, f"txt2img body {t}")
    for k in ("steps", "width", "height", "seed", "batch_size"):
        check(isinstance(t[k], int), f"{k} sent as {type(t[k])}")
    i = posts(sd, "/sdapi/v1/img2img")[0]
    for k, v in {"steps": 40, "width": 128, "height": 96, "denoising_strength": 0.6, "resize_mode": 0,
                 "mask_blur": 20, "inpainting_fill": 1, "inpaint_full_res": False, "inpaint_full_res_padding": 32,
                 "inpainting_mask_invert": 0, "seed": out["seed"] + 1, "sampler_name": "DPM++ 2M",
                 "scheduler": "Karras", "prompt": "red shoe"}.items():
        check(i.get(k) == v, f"img2img {k} = {i.get(k)!r}, want {v!r}")
    check(i["init_images"][0].startswith("data:image/png;base64,") and "\n" not in i["mask"], "data URLs, one line")
    with open(os.path.join(d, "t2i.png"), "rb") as f:
        t2i = f.read()
    check(stubs.b64_tolerant(i["init_images"][0]) == t2i, "init image is the txt2img PNG")
    mw, mh, mch, mpx, _ = stubs.png_decode(stubs.b64_tolerant(i["mask"]))
    check((mw, mh, mch) == (128, 96, 1), f"mask {mw}x{mh}x{mch}")
    check(mpx[0] == 255 and mpx[127] == 0 and sum(1 for v in mpx if v == 255) == 64 * 96, "mask = left half")
    w, h, ch, px, texts = stubs.png_decode(t2i)
    check((w, h) == (128, 96) and texts.get("parameters") == out["infotext"], "t2i PNG keeps its parameters chunk")
    check(f"Seed: {out['seed']}" in out["infotext"], "seed read from info")
    w2, h2, ch2, px2, texts2 = stubs.png_decode(open(os.path.join(d, "i2i.png"), "rb").read())
    col = stubs.colour_of(out["seed"] + 1, "red shoe")
    check(bytes(px2[0:3]) == col and px2[3 * 127:3 * 128] == px[3 * 127:3 * 128], "inpainted left half, kept right")
    check(out["inpaint_seed"] == out["seed"] + 1, "inpaint seed")
    check(len(out["log"]) >= 6 and all("base64" not in json.dumps(r.get("body", {}))[:0] for r in out["log"]), "log")
    logged = json.dumps(out["log"])
    check("iVBOR" not in logged and "<data URL" in logged, "no base64 in request records")


@case
def sd_down():
    d = workdir("sd_down")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    p = sd_tool(url, write_json(os.path.join(d, "c.json"), SD_CFG), d, expect=1)
    check(f"SD server at {url} refused the connection: start the web UI with --api" in p.stderr, p.stderr)
    check(p.elapsed < 3, f"took {p.elapsed:.1f}s: should fail at once")


@case
def sd_500():
    d = workdir("sd_500")
    sd = stubs.SDStub()
    body = {"error": "OutOfMemoryError", "detail": "", "body": "", "errors": "CUDA out of memory"}
    for _ in range(3):
        sd.fault("/sdapi/v1/txt2img", status=500, body=body)
    p = sd_tool(sd.url, write_json(os.path.join(d, "c.json"), SD_CFG), d, expect=1)
    check("500" in p.stderr and "OutOfMemoryError: CUDA out of memory" in p.stderr and "/sdapi/v1/txt2img" in p.stderr,
          p.stderr)
    check(len(posts(sd, "/sdapi/v1/txt2img")) == 2, "a 500 from txt2img is retried exactly once")
    # plain-text 500 (Forge between July and Oct 2024), then success
    sd2 = stubs.SDStub()
    sd2.fault("/sdapi/v1/txt2img", status=500, body="Internal Server Error")
    sd_tool(sd2.url, write_json(os.path.join(d, "c.json"), SD_CFG), d)
    check(len(posts(sd2, "/sdapi/v1/txt2img")) == 2, "retried once then succeeded")


@case
def sd_422():
    d = workdir("sd_422")
    sd = stubs.SDStub()
    sd.fault("/sdapi/v1/txt2img", status=422, body={"detail": [{"loc": ["body", "steps"],
             "msg": "value is not a valid integer", "type": "type_error.integer"}]})
    p = sd_tool(sd.url, write_json(os.path.join(d, "c.json"), SD_CFG), d, expect=1)
    check("422" in p.stderr and "body.steps: value is not a valid integer" in p.stderr, p.stderr)
    check(len(posts(sd, "/sdapi/v1/txt2img")) == 1, "4xx is never retried")
    # the API switched off: every /sdapi route is 404 {"detail":"Not Found"}
    sd2 = stubs.SDStub()
    sd2.fault("/sdapi/v1/sd-models", status=404, body={"detail": "Not Found"})
    p = sd_tool(sd2.url, write_json(os.path.join(d, "c.json"), SD_CFG), d, expect=1)
    check("404 Not Found" in p.stderr and "--api" in p.stderr, p.stderr)


@case
def sd_timeout():
    d = workdir("sd_timeout")
    sd = stubs.SDStub()
    sd.fault("/sdapi/v1/txt2img", delay=3)
    sd.fault("/sdapi/v1/txt2img", delay=3)
    cfg = json.loads(json.dumps(SD_CFG))
    cfg["sd"].update(timeout_s=0.8, max_retries=1)
    p = sd_tool(sd.url, write_json(os.path.join(d, "c.json"), cfg), d, expect=1)
    check("did not answer POST /sdapi/v1/txt2img within 0.8 s" in p.stderr and "timeout_s" in p.stderr, p.stderr)
    check(len(posts(sd, "/sdapi/v1/txt2img")) == 2, "a timeout is retried (max_retries 1)")
    check(p.elapsed < 5, f"took {p.elapsed:.1f}s")


@case
def sd_data_url():
    d = workdir("sd_data_url")
    sd = stubs.SDStub()
    sd.fault("/sdapi/v1/txt2img", data_url=True, grid=True)
    out = json.loads(sd_tool(sd.url, write_json(os.path.join(d, "c.json"), SD_CFG), d).stdout)
    w, h, ch, px, texts = stubs.png_decode(open(os.path.join(d, "t2i.png"), "rb").read())
    check((w, h) == (128, 96), "images[index_of_first_image] decoded despite the data: prefix and the grid")
    check(texts["parameters"] == out["infotext"] and out["infotext"] != "grid", "infotext of the image, not the grid")


@case
def sd_jpeg():
    d = workdir("sd_jpeg")
    sd = stubs.SDStub(encoder=ARGS.tool)
    sd.fault("/sdapi/v1/txt2img", jpeg=True)
    out = json.loads(sd_tool(sd.url, write_json(os.path.join(d, "c.json"), SD_CFG), d).stdout)
    check(out["format"] == "jpeg", "format")
    w, h, ch, px, texts = stubs.png_decode(open(os.path.join(d, "t2i.png"), "rb").read())
    check(texts.get("parameters") == out["infotext"] and "Seed:" in out["infotext"], "PNG carries the infotext")
    ref = stubs.synth_pattern(128, 96, int(__import__("hashlib").sha256(
        f"{out['seed']}|1girl, walking".encode()).digest()[0]) % 3)
    diff = sum(abs(a - b) for a, b in zip(px, ref)) / len(ref)
    check(diff < 6, f"decoded JPEG differs from the stub's pixels by {diff:.1f} on average")
    i = posts(sd, "/sdapi/v1/img2img")[0]
    check(stubs.b64_tolerant(i["init_images"][0])[:8] == b"\x89PNG\r\n\x1a\n", "init image sent as PNG")


@case
def sd_webp():
    d = workdir("sd_webp")
    cfg = write_json(os.path.join(d, "c.json"), SD_CFG)
    if ARGS.webp != "ON":
        # Without libwebp the answer is refused by its signature, with what to do about it.
        sd = stubs.SDStub()
        sd.fault("/sdapi/v1/txt2img", image=b"RIFF\x19\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f" + bytes(12))
        p = sd_tool(sd.url, cfg, d, expect=1)
        check("WebP" in p.stderr and "no WebP support" in p.stderr and "samples_format" in p.stderr, p.stderr)
        return
    sd = stubs.SDStub(encoder=ARGS.tool)
    sd.fault("/sdapi/v1/txt2img", webp=True)
    out = json.loads(sd_tool(sd.url, cfg, d).stdout)
    check(out["format"] == "webp", "format")
    w, h, ch, px, texts = stubs.png_decode(open(os.path.join(d, "t2i.png"), "rb").read())
    # No text chunk in a WebP answer: the infotext comes from info.infotexts, as for JPEG.
    check(texts.get("parameters") == out["infotext"] and "Seed:" in out["infotext"], "PNG carries the infotext")
    ref = stubs.synth_pattern(128, 96, int(__import__("hashlib").sha256(
        f"{out['seed']}|1girl, walking".encode()).digest()[0]) % 3)
    check((w, h, ch) == (128, 96, 3), f"{w}x{h}x{ch}")
    check(bytes(px) == bytes(ref), "lossless WebP answer decoded to other pixels than the stub's")
    i = posts(sd, "/sdapi/v1/img2img")[0]
    check(stubs.b64_tolerant(i["init_images"][0])[:8] == b"\x89PNG\r\n\x1a\n", "init image sent as PNG")
    # A truncated WebP answer fails with a message, not a crash.
    sd2 = stubs.SDStub(encoder=ARGS.tool)
    good = subprocess.run([ARGS.tool, "webp", "8", "8"], input=bytes(range(192)), capture_output=True,
                          check=True).stdout
    sd2.fault("/sdapi/v1/txt2img", image=good[:len(good) // 2])
    p = sd_tool(sd2.url, cfg, d, expect=1)
    check("truncated" in p.stderr and "webp" in p.stderr.lower(), p.stderr)


@case
def sd_auth():
    d = workdir("sd_auth")
    sd = stubs.SDStub(auth="alice:pw-Secret9")
    p = sd_tool(sd.url, write_json(os.path.join(d, "c.json"), SD_CFG), d, expect=1)
    check("401" in p.stderr and "--sd-auth" in p.stderr and "Not authenticated" in p.stderr, p.stderr)
    cfg = json.loads(json.dumps(SD_CFG))
    cfg["sd"]["auth"] = "alice:wrong"
    p = sd_tool(sd.url, write_json(os.path.join(d, "c.json"), cfg), d, expect=1)
    check("Incorrect username or password" in p.stderr and "wrong" not in p.stderr, p.stderr)
    cfg["sd"]["auth"] = "alice:pw-Secret9"
    p = sd_tool(sd.url, write_json(os.path.join(d, "c.json"), cfg), d)
    check("pw-Secret9" not in p.stdout + p.stderr, "password leaked")


@case
def sd_checkpoint_switch():
    d = workdir("sd_ckpt")
    sd = stubs.SDStub()
    cfg = json.loads(json.dumps(SD_CFG))
    cfg["sd"]["checkpoint"] = "pastelmix-better-vae-fp32"
    sd_tool(sd.url, write_json(os.path.join(d, "c.json"), cfg), d)
    sw = posts(sd, "/sdapi/v1/options")
    check(sw == [{"sd_model_checkpoint": "pastelmix-better-vae-fp32.ckpt [943a810f75]"}], f"switch {sw}")
    n = len(sd.requests)
    sd_tool(sd.url, write_json(os.path.join(d, "c.json"), cfg), d)
    check(len(posts(sd, "/sdapi/v1/options")) == 1, "no second switch when the checkpoint is already loaded")
    cfg["sd"]["checkpoint"] = "nonexistent-model"
    p = sd_tool(sd.url, write_json(os.path.join(d, "c.json"), cfg), d, expect=1)
    check("no checkpoint \"nonexistent-model\"" in p.stderr and "pastelmix-better-vae-fp32.ckpt [943a810f75]"
          in p.stderr, p.stderr)
    del n


# ----------------------------------------------------------------------------- LLM client

LABELS = "Shoe,Jacket,Sky"


def llm_tool(url, cfg=None, expect=0, key=SECRET, d=None):
    cfg_path = write_json(os.path.join(d, "llm.json"), cfg or {"llm": {"backoff_base_s": 0.05}})
    env = {"OPENAI_API_KEY": key} if key else {}
    p = run([ARGS.tool, "llm", url + "/v1", cfg_path, "1girl, full body, city background, walking", LABELS],
            env_extra=env, expect=expect)
    check(SECRET not in p.stdout and SECRET not in p.stderr, "API key leaked into the output")
    return p, (json.loads(p.stdout) if expect == 0 else None)


def chats(stub):
    return [(h, b) for m, p, h, b in stub.requests if p == "/v1/chat/completions"]


def scene_json(objs, **kw):
    d = {"story": "s", "global_prompt": "dusk, neon", "global_negative_prompt": None, "objects": objs}
    d.update(kw)
    return json.dumps(d)


@case
def llm_happy():
    d = workdir("llm_happy")
    llm = stubs.LLMStub(key=SECRET)
    cfg = {"llm": {"token_field": "max_tokens", "max_tokens": 500, "vision": 1, "seed": 7}}
    p, out = llm_tool(llm.url, cfg, d=d)
    check([x[:2] for x in llm.paths()] == [("GET", "/v1/models"), ("POST", "/v1/chat/completions")], llm.paths())
    h, b = chats(llm)[0]
    check(h.get("Authorization") == "Bearer " + SECRET, "bearer header")
    check(b["model"] == "stub-model" and b["temperature"] == 0.7 and b["max_tokens"] == 500 and b["seed"] == 7
          and "max_completion_tokens" not in b, f"fields {sorted(b)}")
    rf = b["response_format"]
    check(rf["type"] == "json_schema" and rf["json_schema"]["name"] == "scene_context" and rf["json_schema"]["strict"],
          "response_format json_schema")
    sch = rf["json_schema"]["schema"]
    check(sch["required"] == ["story", "global_prompt", "global_negative_prompt", "objects"]
          and sch["additionalProperties"] is False
          and sch["properties"]["objects"]["items"]["additionalProperties"] is False, "strict schema")
    check(b["messages"][0]["role"] == "system" and "JSON" in b["messages"][0]["content"], "system message")
    parts = b["messages"][1]["content"]
    doc = json.loads(parts[0]["text"])
    check([o["label"] for o in doc["objects"]] == LABELS.split(",") and doc["original_prompt"].startswith("1girl"),
          "user document")
    check(parts[1]["type"] == "image_url" and parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
          and parts[1]["image_url"]["detail"] == "low", "vision part")
    sc = out["scene"]
    check(not sc["degraded"] and [o["tags"] for o in sc["objects"]][0] == ["shoe tag0", "shoe tag1", "shoe tag2"],
          f"scene {sc}")
    check(out["prompts"][2] == "Sky, sky tag0, sky tag1, sky tag2", out["prompts"])
    # Ollama-style config: max_completion_tokens by name
    llm2 = stubs.LLMStub()
    llm_tool(llm2.url, {"llm": {"max_tokens": 300}}, d=d, key=None)
    b2 = chats(llm2)[0][1]
    check(b2["max_completion_tokens"] == 300 and "max_tokens" not in b2, "token field default")
    check("Authorization" not in chats(llm2)[0][0], "no Authorization header without a key")


@case
def llm_429_retry_after():
    d = workdir("llm_429")
    llm = stubs.LLMStub(key=SECRET)
    llm.fault("/v1/chat/completions", status=429, headers={"Retry-After": "1", "x-ratelimit-remaining-requests": "0"},
              body={"error": {"message": "Rate limit reached", "type": "requests", "code": "rate_limit_exceeded"}})
    p, out = llm_tool(llm.url, d=d)
    c = chats(llm)
    check(len(c) == 2 and not out["scene"]["degraded"], f"{len(c)} requests")
    times = [r for r in out["log"] if r["url"].endswith("/chat/completions")]
    check(times[0]["attempts"] == 2 and times[0]["retried_after"] == [429], times)
    check(times[0]["elapsed_s"] >= 0.95, f"Retry-After honoured ({times[0]['elapsed_s']}s)")


@case
def llm_401():
    d = workdir("llm_401")
    llm = stubs.LLMStub(key="the-right-key")
    # the server echoes the offending key in its message; it must not reach our output
    llm.fault("/v1/models", status=401, body={"error": {"message": f"Incorrect API key provided: {SECRET}.",
                                                        "type": "invalid_request_error", "code": "invalid_api_key"}})
    p, _ = llm_tool(llm.url, d=d, expect=1)
    check("rejected the API key" in p.stderr and "OPENAI_API_KEY" in p.stderr and "***" in p.stderr, p.stderr)
    # no preflight fault now: the chat call itself answers 401
    p, _ = llm_tool(llm.url, d=d, expect=1)
    check("401" in p.stderr and "OPENAI_API_KEY" in p.stderr, p.stderr)
    check(len(chats(llm)) == 0, "401 at preflight stops before the chat call")
    # without any key, against OpenAI's URL: stop at once
    p = run([ARGS.tool, "llm", "https://api.openai.com/v1", write_json(os.path.join(d, "c.json"), {}), "p", "Sky"],
            expect=1)
    check("no API key: set OPENAI_API_KEY" in p.stderr, p.stderr)


@case
def llm_500_twice():
    d = workdir("llm_500")
    llm = stubs.LLMStub(key=SECRET)
    for _ in range(2):
        llm.fault("/v1/chat/completions", status=500, body={"error": {"message": "The server had an error",
                                                                        "type": "server_error"}})
    p, out = llm_tool(llm.url, {"llm": {}}, d=d)
    check(len(chats(llm)) == 3 and not out["scene"]["degraded"], "two retries then success")
    rec = [r for r in out["log"] if r["url"].endswith("/chat/completions")][0]
    check(rec["retried_after"] == [500, 500] and rec["elapsed_s"] >= 0.5 * 0.75 + 1.0 * 0.75, rec)
    # 500 for ever: retries exhausted, the run continues with the E.5 fallback
    llm2 = stubs.LLMStub(key=SECRET)
    for _ in range(4):
        llm2.fault("/v1/chat/completions", status=500, body="Internal Server Error")
    p, out = llm_tool(llm2.url, d=d)
    check(out["scene"]["degraded"] and len(chats(llm2)) == 4, "degraded after 1 + 3 attempts")
    check(out["prompts"][0] == "Shoe, 1girl, full body, city background, walking", out["prompts"])


@case
def llm_non_json():
    d = workdir("llm_non_json")
    llm = stubs.LLMStub(key=SECRET)
    llm.script = [{"content": "Story: a walk in the city.\nShoe: red boots"}]
    p, out = llm_tool(llm.url, d=d)
    c = chats(llm)
    check(len(c) == 2 and not out["scene"]["degraded"], "one content retry")
    msgs = c[1][1]["messages"]
    check(len(msgs) == 4 and msgs[2]["role"] == "assistant" and "not JSON" in msgs[3]["content"], "correction turn")
    llm2 = stubs.LLMStub(key=SECRET)
    llm2.script = [{"content": "nope"}] * 3
    p, out = llm_tool(llm2.url, d=d)
    check(len(chats(llm2)) == 3 and out["scene"]["degraded"], "at most 2 content retries, then fallback")
    check(any("LLM step failed" in f for f in out["fallbacks"]), out["fallbacks"])


@case
def llm_code_fences():
    d = workdir("llm_fences")
    llm = stubs.LLMStub(key=SECRET)
    objs = [{"id": i, "label": l, "description": "", "tags": [f"t{i}"], "negative_tags": []}
            for i, l in enumerate(LABELS.split(","))]
    llm.script = [{"content": "Here you go:\n```json\n" + scene_json(objs) + "\n```\nEnjoy!"}]
    p, out = llm_tool(llm.url, d=d)
    check(len(chats(llm)) == 1 and [o["tags"] for o in out["scene"]["objects"]] == [["t0"], ["t1"], ["t2"]],
          out["scene"])


@case
def llm_ids():
    d = workdir("llm_ids")
    llm = stubs.LLMStub(key=SECRET)
    objs = [{"id": 0, "label": "Shoe", "description": "", "tags": ["boots"], "negative_tags": []},
            {"id": 99, "label": " JACKET.", "description": "", "tags": ["denim"], "negative_tags": []},
            {"id": 0, "label": "Shoe", "description": "", "tags": ["duplicate"], "negative_tags": []},
            {"id": 42, "label": "Car", "description": "", "tags": ["red car"], "negative_tags": []}]
    llm.script = [{"content": scene_json(objs)}]
    p, out = llm_tool(llm.url, d=d)
    o = out["scene"]["objects"]
    check(o[0]["tags"] == ["boots"] and o[1]["tags"] == ["denim"] and not o[1]["fallback"], o)
    check(o[2]["fallback"] and o[2]["tags"] == ["dusk", "neon"], "missing Sky: label + global prompt tags")
    check(out["prompts"][2] == "Sky, dusk, neon", out["prompts"])
    check(any("Sky" in f for f in out["fallbacks"]), out["fallbacks"])


@case
def llm_a1111_syntax():
    d = workdir("llm_syntax")
    llm = stubs.LLMStub(key=SECRET)
    tags = ["(masterpiece:1.4)", "<lora:detail:0.8>", "[red:blue:0.5]", "rain AND fog", "BREAK", "\\escaped",
            "'quoted.'", "a, b", "{curly}"] + [f"x{i}" for i in range(10)]
    objs = [{"id": i, "label": l, "description": "", "tags": tags, "negative_tags": ["(bad hands:1.5)"]}
            for i, l in enumerate(LABELS.split(","))]
    llm.script = [{"content": scene_json(objs, global_prompt="(best quality:1.2), <lora:x:1>")}]
    p, out = llm_tool(llm.url, d=d)
    t = out["scene"]["objects"][0]["tags"]
    check(t == ["masterpiece1.4", "loradetail0.8", "redblue0.5", "rain fog", "escaped", "quoted", "a", "b", "curly",
                "x0"], t)
    check(out["scene"]["objects"][0]["negative_tags"] == ["bad hands1.5"], out["scene"]["objects"][0])
    check(out["scene"]["global_prompt"] == "best quality1.2, lorax1", out["scene"]["global_prompt"])
    for pr in out["prompts"]:
        check(not any(c in pr for c in "()[]{}<>:\\") and " AND " not in pr and "BREAK" not in pr, pr)


@case
def llm_empty_choices():
    d = workdir("llm_empty")
    llm = stubs.LLMStub(key=SECRET)
    llm.script = [{"empty_choices": True}]
    p, out = llm_tool(llm.url, d=d)
    check(len(chats(llm)) == 2 and not out["scene"]["degraded"], "retried after empty choices")
    check(out["exchanges"][0]["error"] == "the answer has no choices", out["exchanges"])


@case
def llm_length():
    d = workdir("llm_length")
    llm = stubs.LLMStub(key=SECRET)
    llm.script = [{"content": '{"story": "A long walk thro', "finish_reason": "length"}]
    p, out = llm_tool(llm.url, {"llm": {"max_tokens": 500}}, d=d)
    c = chats(llm)
    check(len(c) == 2 and c[0][1]["max_completion_tokens"] == 500 and c[1][1]["max_completion_tokens"] == 1000,
          "retried with a doubled token limit")
    check(not out["scene"]["degraded"] and "token limit" in out["exchanges"][0]["error"], out["exchanges"])


@case
def llm_schema_downgrade():
    d = workdir("llm_downgrade")
    llm = stubs.LLMStub(key=SECRET, reject_json_schema=True)
    p, out = llm_tool(llm.url, d=d)
    c = chats(llm)
    check([b["response_format"]["type"] for h, b in c] == ["json_schema", "json_object"], "downgrade")
    check(not out["scene"]["degraded"] and any("now using json_object" in f for f in out["fallbacks"]),
          out["fallbacks"])


@case
def llm_refusal():
    d = workdir("llm_refusal")
    llm = stubs.LLMStub(key=SECRET)
    llm.script = [{"content": None, "refusal": "I can't help with that."}]
    p, out = llm_tool(llm.url, d=d)
    check(len(chats(llm)) == 1 and out["scene"]["degraded"], "a refusal is not retried")
    check(any("refused" in f for f in out["fallbacks"]), out["fallbacks"])


@case
def llm_quota():
    d = workdir("llm_quota")
    llm = stubs.LLMStub(key=SECRET)
    llm.fault("/v1/chat/completions", status=429, body={"error": {"message": "You exceeded your current quota",
                                                                   "type": "insufficient_quota",
                                                                   "code": "insufficient_quota"}})
    p, out = llm_tool(llm.url, d=d)
    check(len(chats(llm)) == 1 and out["scene"]["degraded"], "insufficient_quota is never retried")
    check(any("quota exhausted" in f for f in out["fallbacks"]), out["fallbacks"])


@case
def llm_no_server():
    d = workdir("llm_none")
    url = f"http://127.0.0.1:{free_port()}"
    p, _ = llm_tool(url, d=d, expect=1)
    check(f"LLM server at {url}/v1 refused the connection" in p.stderr or
          f"LLM server at {url} refused the connection" in p.stderr, p.stderr)
    check(p.elapsed < 3, "fails at once")


# ------------------------------------------------------------------------------ the loop

RUN_CFG = {"sd": {"width": 128, "height": 128, "hr_scale": 2, "progress_interval_s": 0.05, "backoff_base_s": 0.05},
           "llm": {"backoff_base_s": 0.05, "token_field": "max_tokens"},
           "segmentation": {"IMAGE_MIN_DIM": 256, "IMAGE_MAX_DIM": 256, "DETECTION_MIN_CONFIDENCE": 0,
                            "DETECTION_MAX_INSTANCES": 3},
           "run": {"style_tags": "masterpiece, best quality"}}
PROMPT = "1girl, full body, city background, walking"


def ctxdiff_run(d, sd, llm, out, extra=(), cfg=None, expect=0, env=None, key=SECRET):
    cfg_path = write_json(os.path.join(d, "run-cfg.json"), cfg or RUN_CFG)
    cmd = [ARGS.ctxdiff, "run", "--prompt", PROMPT, "--iterations", "2", "--sd-url", sd.url, "--llm-url",
           llm.url + "/v1", "--llm-model", "stub-model", "--weights", "synthetic:resnet50", "--config", cfg_path,
           "--seed", "1000", "--out", out] + list(extra)
    e = {"OPENAI_API_KEY": key} if key else {}
    e.update(env or {})
    return run(cmd, env_extra=e, expect=expect, timeout=200)


def all_text_of(dirpath):
    blob = b""
    for root, _, files in os.walk(dirpath):
        for f in files:
            with open(os.path.join(root, f), "rb") as fh:
                blob += fh.read()
    return blob


def check_run_outputs(out, sd, drop=(), per_instance=False):
    """Everything a completed 2-iteration run must have left behind; returns run.json."""
    rj = json.load(open(os.path.join(out, "run.json")))
    check(rj["status"] == "done" and rj["final"] == "final.png", f"status {rj['status']}")
    check(rj["initial"]["seed"] == 1000 and rj["settings"]["prompt"] == PROMPT, "initial seed / settings")
    t2i = posts(sd, "/sdapi/v1/txt2img")
    check(len(t2i) >= 1 and t2i[-1]["seed"] == 1000 and t2i[-1]["width"] == 128, "txt2img request")
    initial = open(os.path.join(out, "initial.png"), "rb").read()
    w, h, ch, px, texts = stubs.png_decode(initial)
    check((w, h) == (256, 256) and "Seed: 1000" in texts["parameters"], "initial.png")
    prev_bytes, prev_px = initial, px
    seed = 1000
    nsteps = 0
    for it, itj in enumerate(rj["iterations"]):
        check(itj["completed"] and len(itj["detections"]) >= 1, f"iteration {it + 1} detections")
        check(len(itj["objects"]) == len(itj["steps"]) >= 1, "one step per object")
        check(itj["llm"]["raw_reply"] and itj["llm"]["validated"]["objects"], "LLM reply and validated JSON stored")
        labels = [o["label"] for o in itj["objects"]]
        check(per_instance or len(set(labels)) == len(labels), f"merged per class: {labels}")
        if "overlay" in itj:
            ow, oh, _, _, _ = stubs.png_decode(open(os.path.join(out, itj["overlay"]), "rb").read())
            check((ow, oh) == (256, 256), "overlay size")
        for k, st in enumerate(itj["steps"]):
            seed += 1
            nsteps += 1
            check(st["seed"] == seed and st["completed"], f"step seed {st['seed']} != {seed}")
            mw, mh, mch, mpx, _ = stubs.png_decode(open(os.path.join(out, itj["objects"][k]["mask"]), "rb").read())
            check((mw, mh, mch) == (256, 256, 1) and set(mpx) <= {0, 255}, "mask: image size, binary")
            data = open(os.path.join(out, st["file"]), "rb").read()
            sw, sh, _, spx, stexts = stubs.png_decode(data)
            check(f"Seed: {seed}" in stexts["parameters"], "step PNG keeps the server's parameters chunk")
            col = stubs.colour_of(seed, st["prompt"])
            for p in range(0, 256 * 256, 97):
                want = col if mpx[p] == 255 else bytes(prev_px[3 * p:3 * p + 3])
                check(bytes(spx[3 * p:3 * p + 3]) == want, f"step {st['file']} pixel {p}: chain/mask broken")
            check(st["prompt"].startswith(itj["objects"][k]["label"]) and "masterpiece" in st["prompt"], st["prompt"])
            prev_bytes, prev_px = data, spx
        check(open(os.path.join(out, itj["result"]), "rb").read() == prev_bytes, "iteration result = last step")
    check(open(os.path.join(out, "final.png"), "rb").read() == prev_bytes, "final = last step")
    i2i = [b for j, b in enumerate(posts(sd, "/sdapi/v1/img2img")) if j not in drop]
    check(len(i2i) >= nsteps, "img2img count")
    # chaining as the server saw it: each init image is the previous step's result
    last = i2i[-nsteps:]
    files = [os.path.join(out, "initial.png")] + [os.path.join(out, st["file"]) for itj in rj["iterations"]
                                                    for st in itj["steps"]]
    for j, req in enumerate(last):
        check(stubs.b64_tolerant(req["init_images"][0]) == open(files[j], "rb").read(), f"img2img {j} init image")
        check(req["width"] == 256 and req["height"] == 256 and req["steps"] == 40 and req["mask_blur"] == 20
              and req["inpainting_fill"] == 1 and req["inpaint_full_res"] is False, "img2img fields")
    recs = rj["requests"]
    blob = json.dumps(recs)
    check("iVBOR" not in blob and SECRET not in blob, "requests recorded without base64 and secrets")
    check(all("url" in r and "elapsed_s" in r for r in recs), "request records")
    return rj


@case
def run_happy():
    d = workdir("run_happy")
    sd, llm = stubs.SDStub(), stubs.LLMStub(key=SECRET)
    out = os.path.join(d, "out")
    p = ctxdiff_run(d, sd, llm, out)
    rj = check_run_outputs(out, sd)
    check(rj["settings"].get("device") == "cpu" and rj["settings"].get("precision") == "fp32", rj["settings"])
    seq = sd.paths()
    k1, k2 = (len(it["steps"]) for it in rj["iterations"])
    want = [("GET", "/sdapi/v1/sd-models"), ("GET", "/sdapi/v1/options"), ("GET", "/sdapi/v1/schedulers"),
            ("GET", "/sdapi/v1/samplers"), ("POST", "/sdapi/v1/txt2img")] + [("POST", "/sdapi/v1/img2img")] * (k1 + k2)
    check(seq == want, f"D.9 request sequence: {seq}")
    check(llm.paths() == [("GET", "/v1/models"), ("POST", "/v1/chat/completions")] * 1 +
          [("POST", "/v1/chat/completions")], llm.paths())
    check(len(rj["requests"]) == len(seq) + 3, f"{len(rj['requests'])} request records")
    check(SECRET.encode() not in all_text_of(out) and SECRET not in p.stderr + p.stdout, "API key leaked")
    check("iteration 2/2: inpainting" in p.stderr and "done:" in p.stderr, "progress on stderr")
    # outputs are never overwritten
    p = ctxdiff_run(d, sd, llm, out, expect=1)
    check("already holds a run" in p.stderr and "--resume" in p.stderr, p.stderr)
    # --quiet: nothing on stderr
    p = ctxdiff_run(d, sd, llm, os.path.join(d, "quiet"), extra=["--quiet"])
    check(p.stderr == "", p.stderr)


@case
def run_no_servers():
    d = workdir("run_none")
    url = f"http://127.0.0.1:{free_port()}"
    llm = stubs.LLMStub(key=SECRET)
    out = os.path.join(d, "out")
    p = run([ARGS.ctxdiff, "run", "--prompt", "x", "--sd-url", url, "--llm-url", llm.url + "/v1",
             "--weights", "synthetic:resnet50", "--out", out], env_extra={"OPENAI_API_KEY": SECRET}, expect=1)
    check(f"SD server at {url} refused the connection: start the web UI with --api" in p.stderr, p.stderr)
    check(p.elapsed < 3 and not os.path.exists(out), "stops at once, writes nothing")
    sd = stubs.SDStub()
    p = run([ARGS.ctxdiff, "run", "--prompt", "x", "--sd-url", sd.url, "--llm-url", url + "/v1",
             "--weights", "synthetic:resnet50", "--out", out], env_extra={"OPENAI_API_KEY": SECRET}, expect=1)
    check(f"LLM server at {url} refused the connection" in p.stderr and p.elapsed < 3, p.stderr)
    check(not posts(sd, "/sdapi/v1/txt2img"), "nothing generated")
    # --device / --precision: usage errors (2); a missing GPU is found before any generation
    base = [ARGS.ctxdiff, "run", "--prompt", "x", "--sd-url", url, "--llm-url", llm.url + "/v1",
            "--weights", "synthetic:resnet50", "--out", out]
    p = run(base + ["--device", "tpu"], env_extra={"OPENAI_API_KEY": SECRET}, expect=2)
    check("unknown device 'tpu' (cpu, cuda or cuda:N for GPU N)" in p.stderr, p.stderr)
    p = run(base + ["--device", "cuda:"], env_extra={"OPENAI_API_KEY": SECRET}, expect=2)
    check("unknown device 'cuda:'" in p.stderr, p.stderr)
    p = run(base + ["--precision", "fp16"], env_extra={"OPENAI_API_KEY": SECRET}, expect=2)
    check("--precision fp16 needs --device cuda" in p.stderr, p.stderr)
    p = run(base + ["--device", "cuda"], env_extra={"OPENAI_API_KEY": SECRET}, expect=1)
    check(("--device cuda: no CUDA device" in p.stderr or "--device cuda: this build has no CUDA backend" in p.stderr
           or "refused the connection" in p.stderr) and p.elapsed < 3 and not os.path.exists(out), p.stderr)


@case
def run_no_key():
    d = workdir("run_no_key")
    sd = stubs.SDStub()
    p = run([ARGS.ctxdiff, "run", "--prompt", "x", "--sd-url", sd.url, "--weights", "synthetic:resnet50",
             "--out", os.path.join(d, "out")], expect=1)
    check("no API key: set OPENAI_API_KEY" in p.stderr and p.elapsed < 3, p.stderr)
    check(not sd.requests, "stopped before contacting SD")
    p = run([ARGS.ctxdiff, "run", "--prompt", "x", "--out", os.path.join(d, "o2")],
            env_extra={"OPENAI_API_KEY": SECRET, "CTXDIFF_WEIGHTS": ""}, expect=None)
    check(p.returncode != 0, "missing weights")


@case
def run_zero_detections():
    d = workdir("run_zero")
    sd, llm = stubs.SDStub(), stubs.LLMStub(key=SECRET)
    cfg = json.loads(json.dumps(RUN_CFG))
    cfg["segmentation"]["DETECTION_MIN_CONFIDENCE"] = 1.0
    out = os.path.join(d, "out")
    p = ctxdiff_run(d, sd, llm, out, cfg=cfg)
    rj = json.load(open(os.path.join(out, "run.json")))
    check(rj["status"] == "done" and all(it["objects"] == [] and it["completed"] for it in rj["iterations"]), rj)
    check(not posts(sd, "/sdapi/v1/img2img") and not [1 for m, p_ in llm.paths() if p_.endswith("completions")],
          "no LLM call, no inpainting")
    check(open(os.path.join(out, "final.png"), "rb").read() == open(os.path.join(out, "initial.png"), "rb").read(),
          "final = initial")
    check("no objects detected" in p.stderr, p.stderr)


@case
def run_resume():
    d = workdir("run_resume")
    # reference: an uninterrupted run
    sd0, llm0 = stubs.SDStub(), stubs.LLMStub(key=SECRET)
    ref = os.path.join(d, "ref")
    ctxdiff_run(d, sd0, llm0, ref, extra=["--per-instance"])
    # interrupted run: Ctrl-C while the second inpainting step is being generated
    sd, llm = stubs.SDStub(gen_delay=0), stubs.LLMStub(key=SECRET)
    out = os.path.join(d, "out")
    cfg_path = write_json(os.path.join(d, "run-cfg.json"), RUN_CFG)
    cmd = [ARGS.ctxdiff, "run", "--prompt", PROMPT, "--iterations", "2", "--sd-url", sd.url, "--llm-url",
           llm.url + "/v1", "--llm-model", "stub-model", "--weights", "synthetic:resnet50", "--config", cfg_path,
           "--seed", "1000", "--out", out, "--per-instance"]
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    env["OPENAI_API_KEY"] = SECRET
    sd.fault("/sdapi/v1/img2img")                 # first step: normal
    sd.fault("/sdapi/v1/img2img", delay=30)       # second step: hangs until /interrupt
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    t0 = time.time()
    while len(posts(sd, "/sdapi/v1/img2img")) < 2 and time.time() - t0 < 120 and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(2)
    so, se = proc.communicate(timeout=60)
    check(proc.returncode == 130, f"exit {proc.returncode}: {se[-2000:]}")
    check("/sdapi/v1/interrupt" in [p for m, p in sd.paths()], "Ctrl-C forwarded to /interrupt")
    check(f"--resume {out}" in se, se[-500:])
    rj = json.load(open(os.path.join(out, "run.json")))
    check(rj["status"] == "interrupted", rj["status"])
    done = [st for it in rj["iterations"] for st in it.get("steps", []) if st.get("completed")]
    check(len(done) == 1 and not os.path.exists(os.path.join(out, "final.png")), f"{len(done)} completed steps")
    n_t2i = len(posts(sd, "/sdapi/v1/txt2img"))
    # --threads is allowed with --resume and changes no result (the files are compared below)
    p = run([ARGS.ctxdiff, "run", "--resume", out, "--sd-url", sd.url, "--threads", "1"],
            env_extra={"OPENAI_API_KEY": SECRET}, timeout=200)
    check(len(posts(sd, "/sdapi/v1/txt2img")) == n_t2i, "resume does not regenerate the initial image")
    rj = check_run_outputs(out, sd, drop=(1,), per_instance=True)
    check([len(it["steps"]) for it in rj["iterations"]] == [3, 3], "per-instance: one step per detection")
    for rel in ["initial.png", "final.png", "iter1/result.png", "iter2/result.png"]:
        a = open(os.path.join(ref, rel), "rb").read()
        b = open(os.path.join(out, rel), "rb").read()
        check(a == b, f"{rel} differs from the uninterrupted run")
    check(SECRET.encode() not in all_text_of(out) and SECRET not in p.stderr, "API key leaked")

def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("case")
    ap.add_argument("--tool", required=True)
    ap.add_argument("--ctxdiff", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--webp", default="OFF", help="ON when the build decodes WebP (CTXDIFF_HAVE_WEBP)")
    ARGS = ap.parse_args()
    os.makedirs(ARGS.work, exist_ok=True)
    if ARGS.case not in CASES:
        print(f"unknown case {ARGS.case}; known: {', '.join(CASES)}")
        return 2
    try:
        CASES[ARGS.case]()
    except Fail as e:
        print(f"FAIL {ARGS.case}: {e}")
        return 1
    print(f"ok {ARGS.case}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
