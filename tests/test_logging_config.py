"""The package's LoggingHandler stays out of the way of the application's logging set-up, as
under the SDK's configurator: ``basicConfig`` still sets up the console, and
``dictConfig`` / ``fileConfig`` / ``basicConfig(force=True)`` do not take the handler away."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from tests.conftest import run_bounded

PROGRAM = """
import json, logging, logging.config, sys
import otel_nonblocking
from opentelemetry.sdk._logs import export

memory = getattr(export, "InMemoryLogRecordExporter", None) or export.InMemoryLogExporter
exporter = memory()
handle = otel_nonblocking.configure_telemetry(
    2, traces=False, metrics=False, log_handler=True, log_exporter=exporter
)
log = logging.getLogger("app")

logging.basicConfig(stream=sys.stdout, format="CONSOLE %(message)s")
log.warning("one")
logging.config.dictConfig({
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"f": {"format": "DICT %(message)s"}},
    "handlers": {"out": {"class": "logging.StreamHandler", "stream": "ext://sys.stdout",
                         "formatter": "f"}},
    "root": {"handlers": ["out"], "level": "INFO"},
})
log.warning("two")
logging.basicConfig(force=True, stream=sys.stdout, format="FORCED %(message)s")
log.warning("three")
handle.flush(2)

def body(item):
    return str(getattr(item, "log_record", item).body)

exported = [body(item) for item in exporter.get_finished_logs()]
on_root = handle.log_handler in logging.getLogger().handlers
handle.shutdown(2)
logging.basicConfig(force=True, stream=sys.stdout, format="AFTER %(message)s")
after = handle.log_handler in logging.getLogger().handlers
print("REPORT " + json.dumps({"exported": exported, "on_root": on_root, "after": after}))
"""


def test_the_applications_logging_configuration_keeps_its_console_and_our_handler(
    tmp_path: Path,
) -> None:
    script = tmp_path / "program.py"
    script.write_text(PROGRAM, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    stdout, stderr, _ = run_bounded([sys.executable, str(script)], env)
    lines = stdout.splitlines()
    # The application's own handlers, as it configured them:
    assert "CONSOLE one" in lines, (stdout, stderr)  # basicConfig was not a no-op
    assert "DICT two" in lines
    assert "FORCED three" in lines
    [report] = [json.loads(x.removeprefix("REPORT ")) for x in lines if x.startswith("REPORT ")]
    # ... and every record still exported through our handler:
    assert report["exported"] == ["one", "two", "three"]
    assert report["on_root"] is True
    assert report["after"] is False  # shut down: not put back by a later configuration
