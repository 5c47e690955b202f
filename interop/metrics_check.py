"""/metrics of a running zajel-signal, after the other interop clients used it, read as an operator
would: Prometheus's own parser and linter (`promtool check metrics`) accept it, every family is there,
and what the browser and aioquic clients did shows in the counts.

    python3 interop/metrics_check.py --http http://127.0.0.1:8080
"""

import argparse
import shutil
import subprocess
import sys
import urllib.request

FAMILIES = [
    "zajel_sessions_open",
    "zajel_sessions_opened_total",
    "zajel_sessions_closed_total",
    "zajel_sessions_refused_total",
    "zajel_handshakes_failed_total",
    "zajel_handshakes_in_progress",
    "zajel_messages_received_total",
    "zajel_request_duration_seconds",
    "zajel_errors_sent_total",
    "zajel_pushes_queued_total",
    "zajel_pushes_sent_total",
    "zajel_pushes_dropped_total",
    "zajel_buffered_bytes",
    "zajel_rendezvous_matches_total",
    "zajel_dead_drops_returned_total",
    "zajel_relays_listed_total",
    "zajel_introductions_total",
    "zajel_registry_entries",
    "zajel_quic_retries_total",
    "zajel_certificate_expires_in_seconds",
    "zajel_build_info",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
    "process_open_fds",
    "process_max_fds",
]

# What the interop clients certainly did: sessions on every transport, rendezvous matches (each
# scenario), a pairing matched (the browsers' pair-and-signal scenario), pushes written.
MOVED = [
    'zajel_sessions_opened_total{transport="websocket"}',
    'zajel_sessions_opened_total{transport="quic"}',
    'zajel_sessions_opened_total{transport="webtransport"}',
    'zajel_sessions_closed_total{reason="client_closed",transport="webtransport"}',
    'zajel_messages_received_total{encoding="json",type="register"}',
    'zajel_messages_received_total{encoding="cbor",type="register_rendezvous"}',
    'zajel_request_duration_seconds_count{type="register_rendezvous"}',
    "zajel_rendezvous_matches_total",
    'zajel_introductions_total{kind="pair",outcome="matched"}',
    "zajel_pushes_queued_total",
    "zajel_pushes_sent_total",
    "zajel_certificate_expires_in_seconds",
    "process_cpu_seconds_total",
    "process_resident_memory_bytes",
]


def fail(message):
    sys.exit(f"metrics interop: FAILED: {message}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--http", required=True)
    args = parser.parse_args()
    promtool = shutil.which("promtool")
    if promtool is None:
        fail("promtool is missing (apt-get install prometheus)")
    with urllib.request.urlopen(f"{args.http}/metrics", timeout=10) as response:
        content_type = response.headers["content-type"]
        text = response.read().decode()
    if content_type != "text/plain; version=0.0.4; charset=utf-8":
        fail(f"content type {content_type!r}")
    checked = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True, text=True)
    if checked.returncode != 0:
        fail(f"promtool check metrics: {checked.stdout}{checked.stderr}")

    families = {line.split()[2] for line in text.splitlines() if line.startswith("# TYPE ")}
    missing = [family for family in FAMILIES if family not in families]
    if missing:
        fail(f"families missing: {missing}")
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            samples[series] = float(value)
    still = [series for series in MOVED if not samples.get(series, 0) > 0]
    if still:
        fail(f"no count where the interop clients acted: {still}")
    print(f"metrics interop: promtool accepts {len(families)} families, {len(samples)} samples; "
          f"sessions opened: websocket {samples[MOVED[0]]:.0f}, quic {samples[MOVED[1]]:.0f}, "
          f"webtransport {samples[MOVED[2]]:.0f}; rendezvous matches {samples[MOVED[7]]:.0f}")


if __name__ == "__main__":
    main()
