#!/usr/bin/env python3
"""Drives the real Split Python SDK (splitio_client from PyPI) for tests/real_sdk.rs.

Argument: one JSON object
  {"sdkKey", "sdkUrl", "eventsUrl", "authUrl", "telemetryUrl", "flag",
   "keys": [...], "machineName", "machineIp"}

It builds a factory whose SDK/auth URLs point at a fake Split backend and whose events and
telemetry URLs point at sluice, evaluates the flag for the keys (plus one key with a
bucketing key and one call with impression properties), destroys the factory (which
flushes the impressions) and prints one JSON line on stdout:
  {"version", "calls": [{"key", "bucketingKey", "treatment", "properties"}], "logs": [...]}
where "logs" are the SDK's log records at WARNING and above.
"""

import json
import sys
import threading

from splitio_test_support import capture_logs, wait_for_recorders


def main():
    args = json.loads(sys.argv[1])
    # Everything to stderr (shown when the test fails); WARNING and above also to "logs".
    capture = capture_logs()

    from splitio import get_factory
    from splitio.client.client import EvaluationOptions
    from splitio.client.key import Key
    from splitio.version import __version__

    factory = get_factory(
        args["sdkKey"],
        config={
            "impressionsMode": "debug",
            "streamingEnabled": False,
            "machineName": args["machineName"],
            "machineIp": args["machineIp"],
            # Only the flush on destroy sends impressions.
            "impressionsRefreshRate": 600,
            "connectionTimeout": 5000,
        },
        sdk_api_base_url=args["sdkUrl"],
        events_api_base_url=args["eventsUrl"],
        auth_api_base_url=args["authUrl"],
        telemetry_api_base_url=args["telemetryUrl"],
    )
    factory.block_until_ready(15)
    client = factory.client()
    flag = args["flag"]

    calls = []
    for key in args["keys"]:
        calls.append(
            {"key": key, "bucketingKey": None, "treatment": client.get_treatment(key, flag), "properties": None}
        )
    treatment = client.get_treatment(Key("user-bucketed", "bucket-7"), flag)
    calls.append({"key": "user-bucketed", "bucketingKey": "bucket-7", "treatment": treatment, "properties": None})
    properties = {"plan": "pro", "seats": 3}
    treatment = client.get_treatment("user-props", flag, evaluation_options=EvaluationOptions(properties))
    calls.append({"key": "user-props", "bucketingKey": None, "treatment": treatment, "properties": properties})

    wait_for_recorders(factory)
    destroyed = threading.Event()
    factory.destroy(destroyed)
    if not destroyed.wait(30):
        capture.records.append({"level": "ERROR", "logger": "test", "message": "destroy did not finish in 30 s"})

    print(json.dumps({"version": __version__, "calls": calls, "logs": capture.records}), flush=True)


if __name__ == "__main__":
    main()
