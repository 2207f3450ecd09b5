"""Stub servers for the pipeline tests (Python standard library only), per
shared/spec/pipeline-apis.md Part F: an AUTOMATIC1111-compatible SD stub that returns real
PNGs (txt2img: the synthetic test pattern; img2img: the init image with the masked region
recoloured, so chaining is observable) with `parameters` chunks and `info` strings, and an
OpenAI-compatible chat stub. Both listen on 127.0.0.1 on a port the OS picks, record every
request, and take scripted faults per route."""
import base64
import hashlib
import http.server
import json
import math
import random
import socketserver
import struct
import subprocess
import threading
import time
import zlib

# ---------------------------------------------------------------------------------- PNG

def png_encode(w, h, rgb, text=None, channels=3):
    raw = bytearray()
    stride = w * channels
    for y in range(h):
        raw.append(0)
        raw += rgb[y * stride:(y + 1) * stride]

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xffffffff)

    ctype = {1: 0, 3: 2, 4: 6}[channels]
    out = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, ctype, 0, 0, 0))
    if text is not None:
        try:
            out += chunk(b"tEXt", b"parameters\x00" + text.encode("latin-1"))
        except UnicodeEncodeError:
            out += chunk(b"iTXt", b"parameters\x00\x00\x00\x00\x00" + text.encode("utf-8"))
    out += chunk(b"IDAT", zlib.compress(bytes(raw), 6)) + chunk(b"IEND", b"")
    return out


def png_decode(data):
    """-> (w, h, channels, pixels bytearray, texts dict). 8-bit, non-interlaced."""
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError("not a PNG")
    pos, idat, texts, palette = 8, b"", {}, None
    w = h = ctype = 0
    while pos < len(data):
        n, = struct.unpack(">I", data[pos:pos + 4])
        kind = data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h, depth, ctype, _, _, interlace = struct.unpack(">IIBBBBB", body)
            if depth != 8 or interlace:
                raise ValueError("unsupported PNG depth/interlace")
        elif kind == b"PLTE":
            palette = body
        elif kind == b"IDAT":
            idat += body
        elif kind == b"tEXt":
            k, _, v = body.partition(b"\x00")
            texts[k.decode("latin-1")] = v.decode("latin-1")
        elif kind == b"iTXt":
            k, _, rest = body.partition(b"\x00")
            rest = rest[2:]
            _, _, rest = rest.partition(b"\x00")
            _, _, v = rest.partition(b"\x00")
            texts[k.decode("latin-1")] = v.decode("utf-8")
        elif kind == b"zTXt":
            k, _, v = body.partition(b"\x00")
            texts[k.decode("latin-1")] = zlib.decompress(v[1:]).decode("latin-1")
    ch = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[ctype]
    raw = zlib.decompress(idat)
    stride = w * ch
    out = bytearray(h * stride)
    prev = bytearray(stride)
    p = 0
    for y in range(h):
        f = raw[p]
        line = bytearray(raw[p + 1:p + 1 + stride])
        p += 1 + stride
        if f == 1:
            for i in range(ch, stride):
                line[i] = (line[i] + line[i - ch]) & 255
        elif f == 2:
            for i in range(stride):
                line[i] = (line[i] + prev[i]) & 255
        elif f == 3:
            for i in range(stride):
                left = line[i - ch] if i >= ch else 0
                line[i] = (line[i] + ((left + prev[i]) >> 1)) & 255
        elif f == 4:
            for i in range(stride):
                a = line[i - ch] if i >= ch else 0
                b = prev[i]
                c = prev[i - ch] if i >= ch else 0
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pr = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
                line[i] = (line[i] + pr) & 255
        out[y * stride:(y + 1) * stride] = line
        prev = line
    if ctype == 3:
        rgb = bytearray()
        for v in out:
            rgb += palette[3 * v:3 * v + 3]
        return w, h, 3, rgb, texts
    return w, h, ch, out, texts


def to_rgb(w, h, ch, px):
    if ch == 3:
        return bytearray(px)
    out = bytearray(w * h * 3)
    for i in range(w * h):
        if ch in (1, 2):
            v = px[i * ch]
            out[3 * i:3 * i + 3] = bytes((v, v, v))
        else:
            out[3 * i:3 * i + 3] = px[i * ch:i * ch + 3]
    return out


def b64_tolerant(s):
    if s.startswith("data:"):
        s = s.split(",", 1)[1]
    s = "".join(s.split())
    s += "=" * (-len(s) % 4)
    return base64.b64decode(s, validate=True)


def synth_pattern(w, h, s):
    """The synthetic test image of shared/spec/synthetic-weights.md section 4."""
    out = bytearray(w * h * 3)
    i = 0
    for y in range(h):
        for x in range(w):
            even = ((x // 64 + y // 48 + s) % 2) == 0
            for c in range(3):
                v = 127.5 + 60 * math.sin(0.021 * x * (c + 1) + s) + 60 * math.cos(0.017 * y * (3 - c) - s)
                if even:
                    v = v * 0.5 + 40 * c
                v = math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)
                out[i] = max(0, min(255, int(v)))
                i += 1
    return out


def colour_of(seed, prompt):
    d = hashlib.sha256(f"{seed}|{prompt}".encode()).digest()
    return bytes(d[:3])


# ----------------------------------------------------------------------------- servers

class _Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True


class StubBase:
    def __init__(self):
        self.requests = []      # (method, path, headers dict, parsed body or raw text)
        self.faults = {}        # path -> list of fault dicts, consumed in order
        self.lock = threading.Lock()
        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _do(self, method):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n) if n else b""
                path = self.path.split("?", 1)[0]
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode("utf-8", "replace")
                with stub.lock:
                    stub.requests.append((method, self.path, dict(self.headers), body))
                    queue = stub.faults.get(path)
                    fault = queue.pop(0) if queue else None
                if fault and fault.get("delay"):
                    stub.sleep(fault["delay"])
                if fault and fault.get("drop"):
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if fault and "status" in fault:
                    b = fault.get("body", "")
                    data = b.encode() if isinstance(b, str) else json.dumps(b).encode()
                    return self.reply(fault["status"], data, fault.get("headers", {}),
                                      "application/json" if not isinstance(b, str) else "text/plain")
                status, obj, headers = stub.handle(method, path, self.headers, raw, body, fault or {})
                data = obj if isinstance(obj, bytes) else json.dumps(obj).encode()
                self.reply(status, data, headers or {}, "application/json")

            def reply(self, status, data, headers, ctype):
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            def do_GET(self):
                self._do("GET")

            def do_POST(self):
                self._do("POST")

        self.server = _Server(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def sleep(self, s):
        time.sleep(s)

    def fault(self, path, **f):
        with self.lock:
            self.faults.setdefault(path, []).append(f)

    def close(self):
        self.server.shutdown()
        self.server.server_close()

    def paths(self, skip=("/sdapi/v1/progress",)):
        return [(m, p.split("?")[0]) for m, p, _, _ in self.requests if p.split("?")[0] not in skip]


A1111_404 = {"detail": "Not Found"}
SAMPLERS = ["DPM++ 2M", "DPM++ SDE", "DPM++ 2M SDE", "Euler a", "Euler", "LMS", "Heun", "DPM2", "DDIM", "UniPC"]
SCHEDULERS = [("automatic", "Automatic"), ("uniform", "Uniform"), ("karras", "Karras"), ("exponential", "Exponential")]


class SDStub(StubBase):
    def __init__(self, auth=None, encoder=None, models=None, gen_delay=0.0):
        self.auth = auth
        self.encoder = encoder  # net_tool: its `jpeg`/`webp` commands encode the jpeg/webp fault answers
        self.gen_delay = gen_delay
        self.interrupt = threading.Event()
        self.rng = random.Random(1234)
        self.models = models or [{"title": "v1-5-pruned-emaonly.safetensors [6ce0161689]",
                                  "model_name": "v1-5-pruned-emaonly", "hash": "6ce0161689",
                                  "sha256": None, "filename": "/models/v1-5-pruned-emaonly.safetensors", "config": None},
                                 {"title": "pastelmix-better-vae-fp32.ckpt [943a810f75]",
                                  "model_name": "pastelmix-better-vae-fp32", "hash": "943a810f75",
                                  "sha256": None, "filename": "/models/pastelmix-better-vae-fp32.ckpt", "config": None}]
        self.options = {"sd_model_checkpoint": self.models[0]["title"], "samples_format": "png",
                        "enable_pnginfo": True, "return_grid": True, "overlay_inpaint": True}
        super().__init__()

    def sleep(self, s):
        self.interrupt.wait(s)

    def handle(self, method, path, headers, raw, body, fault):
        routes = {"/sdapi/v1/txt2img": "POST", "/sdapi/v1/img2img": "POST", "/sdapi/v1/sd-models": "GET",
                  "/sdapi/v1/samplers": "GET", "/sdapi/v1/schedulers": "GET", "/sdapi/v1/progress": "GET",
                  "/sdapi/v1/interrupt": "POST", "/sdapi/v1/prompt-styles": "GET", "/sdapi/v1/options": "GET POST"}
        if path not in routes:
            return 404, A1111_404, None
        if method not in routes[path]:
            return 405, {"detail": "Method Not Allowed"}, None
        if self.auth:
            got = headers.get("Authorization", "")
            if not got.startswith("Basic "):
                return 401, {"error": "HTTPException", "detail": "Not authenticated", "body": "",
                             "errors": "401: Not authenticated"}, None
            if base64.b64decode(got[6:]).decode() != self.auth:
                return 401, {"error": "HTTPException", "detail": "Incorrect username or password", "body": "",
                             "errors": "401: Incorrect username or password"}, None
        if method == "POST" and raw and isinstance(body, str):
            return 422, {"detail": [{"loc": ["body", 0], "msg": "Expecting value: line 1 column 1 (char 0)",
                                     "type": "value_error.jsondecode"}]}, None
        if path == "/sdapi/v1/sd-models":
            return 200, self.models, None
        if path == "/sdapi/v1/samplers":
            return 200, [{"name": n, "aliases": [], "options": {}} for n in SAMPLERS], None
        if path == "/sdapi/v1/schedulers":
            return 200, [{"name": n, "label": l, "aliases": None, "default_rho": -1, "need_inner_model": False}
                         for n, l in SCHEDULERS], None
        if path == "/sdapi/v1/prompt-styles":
            return 200, [{"name": "Anime-Image Baseline", "prompt": "{prompt}, masterpiece", "negative_prompt": "lowres"}], None
        if path == "/sdapi/v1/progress":
            return 200, {"progress": 0.5, "eta_relative": 1.0, "state": {"job_count": 1, "sampling_step": 10,
                                                                       "sampling_steps": 20}, "current_image": None,
                         "textinfo": None}, None
        if path == "/sdapi/v1/interrupt":
            self.interrupt.set()
            return 200, {}, None
        if path == "/sdapi/v1/options":
            if method == "GET":
                return 200, self.options, None
            for k, v in (body or {}).items():
                if k == "sd_model_checkpoint":
                    hit = [m for m in self.models if v in (m["title"], m["model_name"], m["hash"])]
                    if not hit:
                        return 500, {"error": "RuntimeError", "detail": "", "body": "",
                                     "errors": f"model '{v}' not found"}, None
                    self.options[k] = hit[0]["title"]
                elif k not in self.options:
                    return 500, {"error": "KeyError", "detail": "", "body": "", "errors": repr(k)}, None
                else:
                    self.options[k] = v
            return 200, None, None
        return self.generate(path, body or {}, fault)

    def generate(self, path, req, fault):
        for f in ("steps", "width", "height", "seed", "batch_size", "n_iter", "mask_blur", "inpainting_fill",
                  "resize_mode"):
            if f in req and not isinstance(req[f], (int, float)):
                return 422, {"detail": [{"loc": ["body", f], "msg": "value is not a valid integer",
                                         "type": "type_error.integer"}]}, None
        seed = int(req.get("seed", -1))
        if seed == -1:
            seed = self.rng.randint(0, 4294967293)
        prompt = req.get("prompt", "")
        steps = int(req.get("steps", 50))
        sampler = req.get("sampler_name") or req.get("sampler_index") or "Euler"
        if path.endswith("txt2img"):
            w0, h0 = int(req.get("width", 512)), int(req.get("height", 512))
            if req.get("enable_hr"):
                w, h = int(w0 * req.get("hr_scale", 2.0)), int(h0 * req.get("hr_scale", 2.0))
            else:
                w, h = w0, h0
            rgb = synth_pattern(w, h, int(hashlib.sha256(f"{seed}|{prompt}".encode()).digest()[0]) % 3)
        else:
            if not req.get("init_images"):
                return 404, {"error": "HTTPException", "detail": "Init image not found", "body": "",
                             "errors": "404: Init image not found"}, None
            try:
                iw, ih, ich, ipx, _ = png_decode(b64_tolerant(req["init_images"][0]))
                mask = None
                if req.get("mask"):
                    mw, mh, mch, mpx, _ = png_decode(b64_tolerant(req["mask"]))
            except Exception:
                return 500, {"error": "HTTPException", "detail": "Invalid encoded image", "body": "",
                             "errors": "500: Invalid encoded image"}, None
            w0 = w = int(req.get("width", 512))
            h0 = h = int(req.get("height", 512))
            if req.get("inpaint_full_res"):
                w, h = iw, ih
            src = to_rgb(iw, ih, ich, ipx)
            rgb = bytearray(w * h * 3)
            for y in range(h):
                sy = y * ih // h
                for x in range(w):
                    sx = x * iw // w
                    rgb[3 * (y * w + x):3 * (y * w + x) + 3] = src[3 * (sy * iw + sx):3 * (sy * iw + sx) + 3]
            col = colour_of(seed, prompt)
            inv = int(req.get("inpainting_mask_invert", 0))
            for y in range(h):
                my = y * mh // h if req.get("mask") else 0
                for x in range(w):
                    if req.get("mask"):
                        v = mpx[(my * mw + x * mw // w) * mch]
                        if inv:
                            v = 255 - v
                        if v < 128:
                            continue
                    rgb[3 * (y * w + x):3 * (y * w + x) + 3] = col
        if self.gen_delay:
            self.interrupt.wait(self.gen_delay)
        info_t = (f"{prompt}\n" + (f"Negative prompt: {req.get('negative_prompt')}\n" if req.get("negative_prompt") else "")
                  + f"Steps: {steps}, Sampler: {sampler}, CFG scale: {req.get('cfg_scale', 7.0)}, Seed: {seed}, "
                  f"Size: {w0}x{h0}, Model hash: 6ce0161689, Model: v1-5-pruned-emaonly"
                  + (f", Denoising strength: {req.get('denoising_strength')}" if "denoising_strength" in req else "")
                  + (f", Mask blur: {req.get('mask_blur')}" if "mask_blur" in req else "") + ", Version: stub")
        if fault.get("jpeg") or fault.get("webp"):  # as SD.Next or samples_format jpg/webp (no text chunk)
            img = subprocess.run([self.encoder, "jpeg" if fault.get("jpeg") else "webp", str(w), str(h)],
                                 input=bytes(rgb), capture_output=True, check=True).stdout
        elif fault.get("image") is not None:  # these bytes instead of the image
            img = fault["image"]
        else:
            img = png_encode(w, h, bytes(rgb), info_t)
        b64 = base64.b64encode(img).decode()
        if fault.get("data_url"):
            b64 = "data:image/png;base64," + b64
        info = {"prompt": prompt, "all_prompts": [prompt], "negative_prompt": req.get("negative_prompt", ""),
                "seed": seed, "all_seeds": [seed], "subseed": seed, "width": w0, "height": h0,
                "sampler_name": sampler, "cfg_scale": req.get("cfg_scale", 7.0), "steps": steps, "batch_size": 1,
                "index_of_first_image": 0, "infotexts": [info_t], "version": "stub"}
        images = [b64]
        if fault.get("grid"):
            images.insert(0, base64.b64encode(png_encode(8, 8, bytes(8 * 8 * 3))).decode())
            info["index_of_first_image"] = 1
            info["infotexts"].insert(0, "grid")
        if self.interrupt.is_set():
            self.interrupt.clear()
        return 200, {"images": images, "parameters": req_echo(req), "info": json.dumps(info)}, None


def req_echo(req):
    return {k: v for k, v in req.items() if k not in ("init_images", "mask")}


def generated_scene(messages):
    """A valid E.2 instance built from the objects of the last user message."""
    doc = {}
    for m in reversed(messages):
        if m.get("role") == "user":
            c = m["content"]
            if isinstance(c, list):
                c = next(p["text"] for p in c if p.get("type") == "text")
            try:
                doc = json.loads(c)
            except ValueError:
                continue
            break
    objs = [{"id": o["id"], "label": o["label"], "description": f"a detailed {o['label'].lower()}",
             "tags": [f"{o['label'].lower()} tag{i}" for i in range(3)], "negative_tags": ["blurry"]}
            for o in doc.get("objects", [])]
    return {"story": "A stub story about " + doc.get("original_prompt", "nothing") + ".",
            "global_prompt": "stub scene, soft light", "global_negative_prompt": None, "objects": objs}


class LLMStub(StubBase):
    def __init__(self, key=None, prefix="/v1", vision=True, reject_json_schema=False):
        self.key = key
        self.prefix = prefix
        self.vision = vision
        self.reject_json_schema = reject_json_schema
        self.script = []   # FIFO of canned replies: {"content": str, "finish_reason": str, "refusal": str}
        super().__init__()

    def error(self, status, msg, param=None, code=None, typ="invalid_request_error", headers=None):
        return status, {"error": {"message": msg, "type": typ, "param": param, "code": code}}, headers

    def handle(self, method, path, headers, raw, body, fault):
        if self.key:
            if headers.get("Authorization", "") != "Bearer " + self.key:
                return self.error(401, "Incorrect API key provided.", code="invalid_api_key")
        if path == self.prefix + "/models" and method == "GET":
            return 200, {"object": "list", "data": [{"id": "stub-model", "object": "model", "created": 0,
                                                     "owned_by": "stub"}]}, None
        if path != self.prefix + "/chat/completions":
            return self.error(404, f"Unknown path {path}", typ="not_found_error")
        if method != "POST":
            return self.error(405, "Method not allowed")
        if not isinstance(body, dict):
            return self.error(400, "We could not parse the JSON body of your request.")
        if not body.get("model"):
            return self.error(400, "you must provide a model parameter", param="model")
        msgs = body.get("messages")
        if not msgs:
            return self.error(400, "messages must be a non-empty array", param="messages")
        rf = (body.get("response_format") or {}).get("type", "text")
        if rf not in ("text", "json_object", "json_schema"):
            return self.error(400, f"Invalid value for response_format.type: {rf}", param="response_format")
        if rf == "json_schema" and self.reject_json_schema:
            return self.error(400, "Invalid parameter: 'response_format' of type 'json_schema' is not supported with "
                                   "this model.", param="response_format")
        for m in msgs:
            if isinstance(m.get("content"), list) and any(p.get("type") == "image_url" for p in m["content"]) \
                    and not self.vision:
                return self.error(400, "Invalid content type. image_url is only supported by certain models.")
        canned = self.script.pop(0) if self.script else {}
        if "empty_choices" in canned:
            choices = []
        else:
            content = canned["content"] if "content" in canned else json.dumps(generated_scene(msgs))
            choices = [{"index": 0, "message": {"role": "assistant", "content": content,
                                                "refusal": canned.get("refusal")},
                        "logprobs": None, "finish_reason": canned.get("finish_reason", "stop")}]
        return 200, {"id": "chatcmpl-stub", "object": "chat.completion", "created": int(time.time()),
                     "model": body["model"], "choices": choices,
                     "usage": {"prompt_tokens": 100, "completion_tokens": 50, "total_tokens": 150}}, None
