"""Pages/s of PDF uploads against a running server: a 10-page digital invoice (text layer) and a 10-page scan.

    python bench/pdf_pages.py --url http://127.0.0.1:8766 --profile invoice --repeat 5 \
        --out bench/results/pdf_pages_cpu.json

CPU seconds per request (all threads of the serving process) come with ``--pid`` (the server's process id) or
``--in-process`` (the app served inside this process: ``create_app`` with the ``OCRNET_*`` environment, through
Starlette's TestClient): on a shared machine wall time follows the other tenants, CPU time much less.

The PDFs are made here: the digital one with real text objects (``tests/pdf_samples.invoice_pages``: company,
date, 30 item rows with an amount column per page, the total on page 10), the scanned one from the first ten DEV
receipt JPEGs (``../shared/data/receipts``), each embedded unchanged on its own page at 200 dpi. For comparison the
same ten JPEGs go as ten files of one request. One warm-up request per kind, then ``--repeat`` sequential requests;
each row gives the median and fastest wall time per request and pages/s at the median. The digital PDF's answer is
checked line by line against the text drawn (``exact``).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import REPO, emit_report, git_commit, list_images, machine_description, markdown_table  # noqa: E402

sys.path.insert(0, str(REPO))  # --in-process: this checkout's service package
sys.path.insert(0, str(REPO / "tests"))  # the PDF builders the tests use
from pdf_samples import digital_pdf, invoice_pages, page_texts, scanned_pdf  # noqa: E402

DEFAULT_RECEIPTS = REPO.parent / "shared" / "data" / "receipts"
Files = list[tuple[str, tuple[str, bytes, str]]]


def exact_text(body: dict, pages: list[list[tuple[float, float, float, str]]]) -> bool:
    """Every page's lines are exactly the text drawn on it (as multisets: reading order may differ by a row)."""
    got = [sorted(line["text"] for line in img["lines"]) for img in body["images"]]
    return got == [sorted(page_texts(items)) for items in pages]


def run_kind(client: httpx.Client, url: str, files: Files, params: dict, repeat: int,
             cpu_clock: Callable[[], float]) -> tuple[list[float], list[float], dict]:
    """Wall and server CPU seconds of each request, and the last answer."""
    client.post(f"{url}/v1/ocr", params=params, files=files).raise_for_status()  # warm-up
    seconds, cpu, body = [], [], {}
    for _ in range(repeat):
        started, cpu_started = time.perf_counter(), cpu_clock()
        r = client.post(f"{url}/v1/ocr", params=params, files=files)
        seconds.append(time.perf_counter() - started)
        cpu.append(cpu_clock() - cpu_started)
        r.raise_for_status()
        body = r.json()
    return seconds, cpu, body


@contextmanager
def in_process_client(headers: dict[str, str]) -> Iterator[httpx.Client]:
    """A TestClient over create_app(Settings()) once it is ready (the OCRNET_* environment configures it)."""
    from fastapi.testclient import TestClient

    from service.api.app import create_app
    from service.api.config import Settings

    app = create_app(Settings())
    with TestClient(app, base_url="http://in-process", headers=headers) as client:
        deadline = time.monotonic() + 600
        while client.get("/readyz").status_code != 200:
            if app.state.engine.error or time.monotonic() > deadline:
                raise SystemExit(f"app never became ready: {app.state.engine.error}")
            time.sleep(0.1)
        yield client


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--url", default="http://127.0.0.1:8000")
    ap.add_argument("--in-process", action="store_true", help="serve the app in this process (adds CPU seconds)")
    ap.add_argument("--pid", type=int, default=None, help="the server's process id (adds its CPU seconds)")
    ap.add_argument("--profile", default="invoice")
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--receipts", type=Path, default=DEFAULT_RECEIPTS)
    ap.add_argument("--kinds", default="digital,scanned,jpegs", help="comma-separated: digital, scanned, jpegs")
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--timeout", type=float, default=600.0)
    ap.add_argument("--out", type=Path, default=None, help="write the JSON report here (and a .md next to it)")
    args = ap.parse_args(argv)

    invoice = invoice_pages(args.pages)
    jpegs = [(p.name, p.read_bytes()) for p in list_images(args.receipts, args.pages)]
    uploads: dict[str, Files] = {
        "digital": [("files", ("invoice.pdf", digital_pdf(invoice), "application/pdf"))],
        "scanned": [("files", ("scan.pdf", scanned_pdf([data for _, data in jpegs], dpi=200), "application/pdf"))],
        "jpegs": [("files", (name, data, "image/jpeg")) for name, data in jpegs],
    }
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    rows, report = [], {"machine": machine_description(), "commit": git_commit(), "url": args.url,
                        "profile": args.profile, "repeat": args.repeat, "kinds": {}}
    url = "http://in-process" if args.in_process else args.url
    report["url"] = url
    opened = in_process_client(headers) if args.in_process else \
        nullcontext(httpx.Client(timeout=args.timeout, headers=headers))
    cpu_clock: Callable[[], float] = time.process_time if args.in_process else (lambda: float("nan"))
    if args.pid is not None:
        import psutil

        server = psutil.Process(args.pid)
        cpu_clock = lambda: sum(server.cpu_times()[:2])  # noqa: E731  user + system, every thread
    with opened as client:
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            seconds, cpu, body = run_kind(client, url, uploads[kind], {"profile": args.profile}, args.repeat,
                                          cpu_clock)
            pages = len(body["images"])
            sources = sorted({line["source"] for img in body["images"] for line in img["lines"]})
            exact = exact_text(body, invoice) if kind == "digital" else None
            median = statistics.median(seconds)
            total = (body.get("documents") or [{}])[0].get("fields", {}).get("total")
            measured = args.in_process or args.pid is not None
            cpu_median = statistics.median(cpu) if measured else None
            report["kinds"][kind] = {"pages": pages, "seconds": seconds, "median_s": median,
                                     "cpu_seconds": cpu if measured else None,
                                     "pages_per_s": pages / median, "sources": sources, "exact_text": exact,
                                     "lines": sum(len(img["lines"]) for img in body["images"]),
                                     "document_total": total}
            rows.append([kind, pages, len(seconds), f"{median:.3f}", f"{min(seconds):.3f}", f"{pages / median:.2f}",
                         "-" if cpu_median is None else f"{cpu_median:.3f}",
                         ",".join(sources), "-" if exact is None else ("yes" if exact else "NO"),
                         total if kind != "jpegs" else "-"])
    markdown = "\n".join([
        f"`{' '.join(['python', 'bench/pdf_pages.py', *(argv if argv is not None else sys.argv[1:])])}`",
        f"{report['machine']}, commit {report['commit']}, profile {args.profile}", "",
        markdown_table(["upload", "pages", "requests", "median s", "fastest s", "pages/s", "median CPU s", "line sources",
                        "exact text", "total (all pages)"], rows),
    ])
    emit_report(report, markdown, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
