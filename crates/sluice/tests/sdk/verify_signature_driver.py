#!/usr/bin/env python3
"""Runs the signature-verification snippet of docs/delivery.md on requests sluice really
delivered, for tests/doc_snippets.rs.

Usage: verify_signature_driver.py SNIPPET CASES

SNIPPET is the docs' code block as written; it defines verify_webhook(secret, headers, body).
CASES is a JSON file: [{"secret", "headers": {name: value}, "body": path to the raw body}].
Prints one JSON line: verify_webhook's answer for each case, in order. The headers are passed
as a case-insensitive mapping, as web frameworks give them.
"""

import json
import runpy
import sys


class Headers:
    """A read-only, case-insensitive view of a request's headers."""

    def __init__(self, headers):
        self._headers = {name.lower(): value for name, value in headers.items()}

    def __getitem__(self, name):
        return self._headers[name.lower()]

    def get(self, name, default=None):
        return self._headers.get(name.lower(), default)


def main():
    snippet, cases_path = sys.argv[1:3]
    verify_webhook = runpy.run_path(snippet)["verify_webhook"]
    with open(cases_path) as f:
        cases = json.load(f)
    answers = []
    for case in cases:
        with open(case["body"], "rb") as f:
            body = f.read()
        answers.append(verify_webhook(case["secret"], Headers(case["headers"]), body))
    print(json.dumps(answers))


if __name__ == "__main__":
    main()
