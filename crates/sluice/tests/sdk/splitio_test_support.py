"""Helpers shared by the scripts that drive the real Split Python SDK (splitio_client) in tests:
capturing the SDK's log records, and waiting for its impressions recorder before destroying a
factory."""

import logging
import sys
import time


class Capture(logging.Handler):
    """Keeps log records at WARNING and above as {"level", "logger", "message"}."""

    def __init__(self):
        super().__init__(level=logging.WARNING)
        self.records = []

    def emit(self, record):
        self.records.append(
            {"level": record.levelname, "logger": record.name, "message": record.getMessage()}
        )


def capture_logs():
    """Sends every log record to stderr (shown when a test fails) and returns a Capture of
    those at WARNING and above."""
    capture = Capture()
    logging.basicConfig(level=logging.DEBUG, stream=sys.stderr)
    logging.getLogger().addHandler(capture)
    return capture


def wait_for_recorders(factory, timeout=10.0):
    """Waits until the SDK's impressions recorder thread runs.

    splitio_client 10.x starts its periodic recorders on threads once the SDK is ready, and a
    recorder's stop() (which flushes) is a no-op until its thread has started: a factory
    destroyed right after becoming ready can exit without sending its impressions. A real
    application lives longer than that; test scripts wait for the thread (private attributes,
    so with a plain one-second wait as the fallback).
    """
    try:
        task = factory._sync_manager._synchronizer._split_tasks.impressions_task
        deadline = time.monotonic() + timeout
        while not task.is_running() and time.monotonic() < deadline:
            time.sleep(0.02)
    except AttributeError:
        time.sleep(1.0)
