#!/usr/bin/env python3
"""Writes the committed seed corpus of every fuzz target into fuzz/seeds/<target>/.

Seeds come from the repository's fixtures (fixtures/split-sdk, real SDK bodies) and the
bodies the unit tests use; the binary formats (stored records, segment frames) are built
here byte for byte as sluice_core::record and the embedded log's frame.rs write them.
Run again after changing a format: `python3 fuzz/seed.py`."""
import gzip, json, os, struct, pathlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
SEEDS = ROOT / "fuzz" / "seeds"

def put(target, name, data):
    d = SEEDS / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data if isinstance(data, bytes) else data.encode())

fixtures = sorted((ROOT / "fixtures" / "split-sdk").glob("*.json"))
bulk = [p.read_bytes() for p in fixtures] + [
    b'[{"f":"dark_mode","i":[{"k":"user-0","t":"on","m":1795353299739,"c":1700000000000,"r":"default rule","b":null,"pt":null}]}]',
    b'[{"f":"new_checkout","i":[{"k":"user-1","t":"off","m":5,"c":7,"properties":"{\\"page\\":\\"cart\\",\\"i\\":1}"}]}]',
    b'[{"f":"x","i":[{"k":"a","t":"on","m":"1"}]}]',
    b'[]',
]
for i, b in enumerate(bulk):
    put("split_bulk", f"bulk-{i}", b)
    put("gzip_inflate", f"bulk-{i}.gz", gzip.compress(b, mtime=0))
put("gzip_inflate", "empty.gz", gzip.compress(b"", mtime=0))
put("gzip_inflate", "zeros.gz", gzip.compress(b"\0" * 100_000, mtime=0))

put("split_counts", "two", b'{"pf":[{"f":"a","m":1,"rc":3},{"f":"b","m":1,"rc":4}]}')
put("split_counts", "empty", b'{"pf":[]}')

native = [
    b'[{"key":"u","split":"s","treatment":"on","time":1,"label":"l","splitVersionNumber":9,"properties":"{\\"a\\":1}","sdk":"go","sdkVersion":"1.0","environmentId":"ignored"}]',
    b'[{"key":"u","split":"s","treatment":"on","time":1,"properties":{"a":1}}]',
    b'[{"key":"a","split":"s","treatment":"on","time":-1}]',
]
for i, b in enumerate(native):
    put("native_array", f"array-{i}", b)
put("native_ndjson", "two-lines", b'{"key":"a","split":"s","treatment":"on","time":1}\r\n\n{"key":"b","split":"s","treatment":"off","time":2}\n')
put("native_ndjson", "bad-line", b'{"key":"a"}\n')

# The outgoing form the receiver checks (SPEC §3): 14 fields per impression.
outgoing = [{
    "key": "user-1", "split": "dark_mode", "treatment": "on", "time": 1795353299739,
    "bucketingKey": None, "label": "default rule", "changeNumber": 1700000000000,
    "properties": None, "environmentId": "env-1", "environmentName": "production",
    "sdk": "python", "sdkVersion": "10.7.0", "machineName": None, "machineIp": None,
}]
body = json.dumps(outgoing).encode()
put("receiver_body", "plain", b"\x00" + body)
put("receiver_body", "plain-keep", b"\x02" + body)
put("receiver_body", "gzip", b"\x01" + gzip.compress(body, mtime=0))
put("receiver_body", "slack", b"\x00" + b'{"text":"3 impressions"}')

for i, v in enumerate(["7", " 0 ", "Sun, 06 Nov 1994 08:49:37 GMT", "Wed, 21 Oct 2065 07:28:00 GMT",
                       "99999999999999999999999", "", "-1", "Sunday, 06-Nov-94 08:49:37 GMT"]):
    put("retry_after", f"value-{i}", v)

# --- binary formats ---
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)

def s(x):
    x = x.encode()
    return varint(len(x)) + x

def opt(x):
    if x is None:
        return varint(0)
    x = x.encode()
    return varint(len(x) + 1) + x

def record_entry(n):
    out = varint(1) + s("production") + s("python") + s("10.7.0") + opt("host-1") + opt(None)
    out += varint(n)
    for i in range(n):
        out += varint(0) + s(f"user-{i}") + s("dark_mode") + s("on") + struct.pack("<q", 1795353299739 + i)
        out += opt(None) + opt("default rule") + struct.pack("<q", 1700000000000) + opt('{"a":1}' if i % 2 else None)
    return out

for n in (0, 1, 3):
    put("record_entry", f"entry-{n}", record_entry(n))

def crc32c(data):
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF

def frame(base, count, payload, ingest=1795353299739, tmin=1795353299739, tmax=1795353299740):
    rest = struct.pack("<IIQqqq", len(payload), count, base, ingest, tmin, tmax)
    return b"SLG1" + struct.pack("<I", crc32c(rest + payload)) + rest + payload

one = frame(0, 1, record_entry(1))
two = one + frame(1, 3, record_entry(3))
put("segment_frames", "one-frame", one)
put("segment_frames", "two-frames", two)
put("segment_frames", "torn-tail", two[:-5])
put("segment_frames", "bad-offset", one + frame(7, 1, record_entry(1)))
