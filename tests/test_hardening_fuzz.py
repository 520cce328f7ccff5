"""Property-based fuzzing of every operation in the live OpenAPI schema (schemathesis 4) against a real server.

Properties, checked on every generated request (valid and schema-violating ones): no 5xx, the status code is one
the schema documents, the content type, the documented headers and the body all conform to the schema, and
schema-violating input is rejected with a 4xx. Random bytes never decode as images, so a share of the /v1/ocr
cases gets a real tiny PNG/JPEG swapped in: the 200 OcrResponse path is fuzzed too (options, profiles, counts).
Bounded by ``max_examples`` per operation so the whole file stays around a minute on 2 cores.
"""
from __future__ import annotations

from collections import Counter

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hardening_support import fast_bundle, run_server, server_env
from hostile_inputs import encode, small_doc

KEY = "fuzz-key-0123456789"
MAX_EXAMPLES = 100
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance,
          response_schema_conformance, negative_data_rejection]
SEEN: Counter = Counter()
REAL_IMAGES = (encode(small_doc(), "PNG"), encode(small_doc(64, 40), "JPEG", quality=80))

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fuzz_server(base_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    bundle = fast_bundle(root / "fast", base_model_dir)
    env = server_env(bundle, root / "none", api_key=KEY, max_files="4", max_upload_bytes=str(256 * 1024))
    with run_server(env) as server:
        yield server
    by_status, by_op = Counter(), Counter()
    for (op, mode, status, _), n in SEEN.items():
        by_status[status] += n
        by_op[f"{op} {mode}"] += n
    print(f"\nfuzzed {sum(SEEN.values())} requests: by status {dict(sorted(by_status.items()))}; "
          f"by operation {dict(by_op)}; detail {dict(sorted(SEEN.items()))}")


@pytest.fixture(scope="module")
def api_schema(fuzz_server):
    # Schema-violating input must get a 4xx the service documents; 413 (too many files/too large) is one of them.
    config = SchemathesisConfig.from_dict(
        {"checks": {"negative_data_rejection": {"expected-statuses": ["400", "401", "408", "413", "415", "422"]}}}
    )
    return schemathesis.openapi.from_url(f"{fuzz_server.base_url}/openapi.json", config=config)


def _swap_in_real_images(case) -> None:
    """Every other multipart case with a list of files gets real images (keeps the generated options)."""
    body = case.body
    if not isinstance(body, dict) or not isinstance(body.get("files"), list) or not body["files"]:
        return
    if len(repr(sorted(body))) % 2 == 0:
        body["files"] = [REAL_IMAGES[i % 2] for i in range(min(len(body["files"]), 2))]


# schemathesis' own pytest plugin (``schema.parametrize``) breaks on pytest 9 ("Function has no _nodeid"), so each
# operation's Hypothesis strategy is driven with ``@given`` here: same generators, same checks.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=lambda m: m.value)
def test_api_conforms_to_its_schema_and_never_5xx(api_schema, fuzz_server, mode):
    operations = [result.ok() for result in api_schema.get_all_operations()]
    labels = {op.label for op in operations}
    assert {"POST /v1/ocr", "GET /v1/models", "GET /healthz", "GET /readyz", "GET /metrics"} <= labels, labels
    for operation in operations:
        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def run(case) -> None:
            if mode is GenerationMode.POSITIVE and operation.path == "/v1/ocr":
                _swap_in_real_images(case)
            if case.headers and "X-API-Key" in case.headers:  # generated key -> the real one; a removed key stays
                case.headers["X-API-Key"] = KEY                 # removed (negative case: must get 401)
            response = case.call(timeout=60)
            code = response.json()["error"]["code"] if response.status_code >= 400 else ""
            SEEN[(operation.label, mode.value, response.status_code, code)] += 1
            case.validate_response(response, checks=CHECKS)
            assert response.status_code < 500
            assert response.headers.get("x-request-id")

        try:
            run()
        except Unsatisfiable:  # nothing schema-violating to generate (an operation with no inputs)
            assert mode is GenerationMode.NEGATIVE, operation.label
        assert fuzz_server.alive
