#!/usr/bin/env python3
"""Runs the Python SDK snippet of README.md with the real Split SDK, for tests/doc_snippets.rs.

Usage: readme_python_harness.py SNIPPET REPORT SPLIT_BACKEND_URL

SNIPPET is the README's code block exactly as written, except that the test has filled in
sluice's address and the SDK key. It runs as __main__ with three additions a test needs on a
machine that cannot reach Split's cloud:

- get_factory gets the flag, auth and streaming base URLs of a fake Split backend on loopback
  (SPLIT_BACKEND_URL) unless the snippet sets them itself. The events and telemetry URLs are
  the snippet's own: if it did not point them at sluice, no impression arrives.
- Every name lookup other than loopback is refused and recorded, so a snippet (or an SDK
  default) that would reach out to Split's cloud fails the test instead of leaking impressions.
- A factory's destroy() first waits for the SDK's impressions recorder (see
  splitio_test_support.wait_for_recorders): the snippet destroys its factory moments after
  start-up, which a real application does not.

At exit it writes REPORT as JSON:
  {"version", "machineName", "machineIp", "calls": [{"key", "bucketingKey", "split",
   "treatment", "properties"}], "refusedHosts": [...], "logs": [...]}
where "version" is the SDK's SplitSDKVersion header, "machineName"/"machineIp" what it sends
in its SplitSDKMachineName/IP headers (null when it sends none) and "logs" the SDK's log
records at WARNING and above.
"""

import atexit
import json
import runpy
import socket
import sys

from splitio_test_support import capture_logs, wait_for_recorders

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def main():
    snippet, report_path, backend = sys.argv[1:4]
    capture = capture_logs()
    report = {"calls": [], "refusedHosts": [], "logs": capture.records}

    real_getaddrinfo = socket.getaddrinfo

    def loopback_only(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else str(host)
        if name not in LOOPBACK:
            report["refusedHosts"].append(name)
            raise socket.gaierror(socket.EAI_NONAME, f"test: no network beyond loopback ({name})")
        return real_getaddrinfo(host, *args, **kwargs)

    socket.getaddrinfo = loopback_only

    import splitio
    import splitio.client.util as sdk_util
    from splitio.client.client import Client
    from splitio.client.factory import SplitFactory
    from splitio.client.key import Key

    real_get_factory = splitio.get_factory

    def get_factory(api_key, **kwargs):
        for name in ("sdk_api_base_url", "auth_api_base_url", "streaming_api_base_url"):
            kwargs.setdefault(name, backend)
        return real_get_factory(api_key, **kwargs)

    splitio.get_factory = get_factory

    real_get_metadata = sdk_util.get_metadata

    def get_metadata(config):
        metadata = real_get_metadata(config)
        report["version"] = metadata.sdk_version
        # splitio.api sends neither machine header when the IP is "NA" or "unknown".
        sent = metadata.instance_ip not in ("NA", "unknown")
        report["machineName"] = metadata.instance_name if sent else None
        report["machineIp"] = metadata.instance_ip if sent else None
        return metadata

    sdk_util.get_metadata = get_metadata

    def recording(method):
        def wrapper(self, key, feature_flag_name, attributes=None, evaluation_options=None):
            result = method(self, key, feature_flag_name, attributes, evaluation_options)
            treatment = result[0] if isinstance(result, tuple) else result
            properties = getattr(evaluation_options, "properties", None)
            report["calls"].append(
                {
                    "key": key.matching_key if isinstance(key, Key) else key,
                    "bucketingKey": key.bucketing_key if isinstance(key, Key) else None,
                    "split": feature_flag_name,
                    "treatment": treatment,
                    "properties": properties,
                }
            )
            return result

        return wrapper

    Client.get_treatment = recording(Client.get_treatment)
    Client.get_treatment_with_config = recording(Client.get_treatment_with_config)

    real_destroy = SplitFactory.destroy

    def destroy(self, destroyed_event=None):
        wait_for_recorders(self)
        return real_destroy(self, destroyed_event)

    SplitFactory.destroy = destroy

    def write_report():
        with open(report_path, "w") as out:
            json.dump(report, out)

    atexit.register(write_report)
    runpy.run_path(snippet, run_name="__main__")


if __name__ == "__main__":
    main()
