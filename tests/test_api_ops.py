"""Health, readiness, models, metrics, API key and CORS."""
from __future__ import annotations

import hashlib

import pytest
from fastapi.testclient import TestClient

from api_support import assert_error, encode, metric_value, ready_client, square_doc
from service.api.app import create_app
from service.api.config import Settings

KEY = "s3cret-key"


@pytest.fixture(scope="module")
def client(base_model_dir):
    with ready_client(model_dir=base_model_dir, api_key=KEY) as c:
        yield c


def test_readyz_is_503_until_models_are_loaded_and_healthz_is_always_200(base_model_dir):
    client = TestClient(create_app(Settings(model_dir=base_model_dir)))  # no lifespan: nothing loaded
    assert client.get("/healthz").json() == {"status": "ok"}
    r = client.get("/readyz")
    assert_error(r, 503, "not_ready")
    assert r.headers["retry-after"] == "1"
    assert_error(client.post("/v1/ocr", files=[("files", ("a.png", b"x"))]), 503, "not_ready")


def test_readyz_reports_failed_models(tmp_path):
    app = create_app(Settings(model_dir=tmp_path, models_root=tmp_path))
    with TestClient(app) as client:
        for _ in range(200):
            if app.state.engine.error:
                break
            client.get("/healthz")
        assert client.get("/healthz").status_code == 200
        assert_error(client.get("/readyz"), 503, "models_failed")
        assert_error(client.post("/v1/ocr", files=[("files", ("a.png", b"x"))]), 503, "models_failed")


def test_api_key_is_required_on_v1_routes_only(client, base_model_dir):
    for headers in ({}, {"X-API-Key": "wrong"}, {"X-API-Key": KEY + "x"}):
        r = client.get("/v1/models", headers=headers)
        assert_error(r, 401, "unauthorized")
        assert r.headers["www-authenticate"] == "ApiKey"
        assert_error(client.post("/v1/ocr", headers=headers, files=[("files", ("a.png", b"x"))]), 401, "unauthorized")
    for path in ("/healthz", "/readyz", "/metrics"):
        assert client.get(path).status_code == 200, path
    r = client.get("/v1/models", headers={"X-API-Key": KEY})
    assert r.status_code == 200
    (model,) = r.json()["models"]
    assert r.json()["ready"] is True
    assert model["name"] == "base" and model["providers"] == ["CPUExecutionProvider"]
    assert sorted(model["profiles"]) == ["generic", "id", "invoice", "plate"]
    for part, filename in (("det", "det.onnx"), ("rec", "rec.onnx"), ("charset", "charset.json")):
        assert model["sha256"][part] == hashlib.sha256((base_model_dir / filename).read_bytes()).hexdigest()
    r = client.post("/v1/ocr", headers={"X-API-Key": KEY}, files=[("files", ("d.png", encode(square_doc()), "image/png"))])
    assert r.status_code == 200 and r.json()["images"][0]["lines"]


def test_metrics_count_requests_by_route_and_status(client):
    client.get("/v1/models")
    client.get("/v1/models")
    client.get("/no/such/route")
    text = client.get("/metrics").text
    assert metric_value(text, "ocrnet_http_requests_total", route="/v1/models", status="401") >= 2
    assert metric_value(text, "ocrnet_http_requests_total", route="unmatched", status="404") >= 1
    assert metric_value(text, "ocrnet_http_request_duration_seconds_count", route="/v1/models", method="GET") >= 2
    assert metric_value(text, "ocrnet_http_inflight_requests") == 1  # the /metrics request itself
    assert "ocrnet_queue_depth" in text and "ocrnet_batch_size_bucket" in text


def test_cors_is_off_by_default_and_on_when_configured(base_model_dir):
    preflight = {"Origin": "https://app.example", "Access-Control-Request-Method": "POST"}
    off = TestClient(create_app(Settings(model_dir=base_model_dir)))
    assert "access-control-allow-origin" not in off.options("/v1/ocr", headers=preflight).headers
    on = TestClient(create_app(Settings(model_dir=base_model_dir, cors_origins=["https://app.example"])))
    r = on.options("/v1/ocr", headers=preflight)
    assert r.headers["access-control-allow-origin"] == "https://app.example"


def test_openapi_documents_every_route_with_ids_tags_models_and_errors(base_model_dir):
    schema = TestClient(create_app(Settings(model_dir=base_model_dir))).get("/openapi.json").json()
    operations = {(path, method): op for path, item in schema["paths"].items() for method, op in item.items()}
    assert {(p, m) for p, m in operations} == {("/v1/ocr", "post"), ("/v1/models", "get"), ("/healthz", "get"),
                                               ("/readyz", "get"), ("/metrics", "get")}
    for (path, _), op in operations.items():
        assert op["operationId"] and op["tags"], path
        assert op["responses"]["200"]["content"], path
        for status, response in op["responses"].items():
            if status.startswith(("4", "5")):
                ref = response["content"]["application/json"]["schema"]["$ref"]
                assert ref.endswith("/ErrorResponse"), (path, status)
    ocr = operations[("/v1/ocr", "post")]
    assert {"400", "401", "413", "415", "422", "503", "504"} <= set(ocr["responses"])
    assert "Retry-After" in ocr["responses"]["503"]["headers"]
    assert "HTTPValidationError" not in schema["components"]["schemas"]  # 422s use the one error model too
    upload = schema["components"]["schemas"]["OcrUpload"]
    assert upload["properties"]["files"]["items"]["format"] == "binary"
    assert upload["properties"]["profile"]["enum"] == ["generic", "invoice", "id", "plate"]
    for name in ("OcrResponse", "ErrorResponse", "ModelsResponse", "HealthResponse", "ReadyResponse"):
        assert schema["components"]["schemas"][name].get("example"), name


def test_profiles_map_to_finetuned_model_dirs(tmp_path, base_model_dir):
    from service.api.engine import Engine
    from service.api.metrics import Metrics

    plate = tmp_path / "plate"
    plate.mkdir()
    (plate / "model.json").write_text(
        f'{{"name": "plate", "version": "1", "det": "{base_model_dir}/det.onnx", "rec": "{base_model_dir}/rec.onnx", '
        f'"charset": "{base_model_dir}/charset.json"}}'
    )
    discovered = Engine(Settings(model_dir=base_model_dir, models_root=tmp_path), Metrics())
    assert discovered.by_profile["plate"].dir == plate
    assert {discovered.by_profile[p].dir for p in ("generic", "invoice", "id")} == {base_model_dir}
    assert len(discovered.runners) == 2 and discovered.by_profile["plate"].profiles == ["plate"]

    explicit = Engine(Settings(model_dir=base_model_dir, models_root=tmp_path, profile_models={"plate": base_model_dir,
                                                                                                "id": plate}), Metrics())
    assert explicit.by_profile["plate"].dir == base_model_dir and explicit.by_profile["id"].dir == plate
    with pytest.raises(ValueError, match="passport"):
        Engine(Settings(model_dir=base_model_dir, profile_models={"passport": plate}), Metrics())
